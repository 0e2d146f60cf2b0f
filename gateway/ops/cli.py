"""Command line: ``ocpp-gateway run|check-config|hash-password|id-alias|report|demo``. The only module that exits."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from gateway.config import _ID_TOKEN_TYPES as ID_TOKEN_TYPES  # 2.0.1 IdTokenEnumType (part of the alias)
from gateway.config import ConfigError, config_warnings, load_config
from gateway.logging import configure_logging

__all__ = ["main"]


async def _serve_until_signalled(config_path: str) -> int:
    from gateway.ops.lifecycle import serve
    from gateway.ops.workers import Supervisor

    config = load_config(config_path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(config, stop, config_path, workers=Supervisor if config.workers > 1 else None)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as e:
        _print_problems(args.config, e)
        return 2
    fmt = "console" if config.logging.format == "console" else "json"
    configure_logging(config.logging.level, fmt)
    from gateway.ops.lifecycle import install_loop_policy

    install_loop_policy()
    try:
        return asyncio.run(_serve_until_signalled(args.config))
    except ConfigError as e:  # found at start: TLS files unreadable or mismatched, credentials file malformed
        _print_problems(args.config, e)
        return 2


def _print_problems(path: str, e: ConfigError) -> None:
    print(
        f"{path}: invalid configuration ({len(e.problems)} problem{'s' if len(e.problems) != 1 else ''})",
        file=sys.stderr,
    )
    for where, msg in e.problems:
        print(f"  {where}: {msg}", file=sys.stderr)


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as e:
        _print_problems(args.file, e)
        return 2
    from gateway.ops.certs import check_files

    files, _ = check_files(config)
    files.warnings.extend(config_warnings(config))
    for where, msg in files.warnings:
        print(f"  warning: {where}: {msg}", file=sys.stderr)
    if files.errors:
        _print_problems(args.file, ConfigError(files.errors))
        return 2
    print(
        f"{args.file}: OK ({len(config.backends)} backend(s), {len(config.routes)} route(s), "
        f"{len(config.all_listeners())} listener(s), store {config.store.url.split('@')[-1]}"
        f"{f', {len(files.warnings)} warning(s)' if files.warnings else ''})"
    )
    return 0


def cmd_hash_password(args: argparse.Namespace) -> int:
    """Read a password (from the terminal without echo, or one line of stdin); print its hash for a credentials file."""
    import getpass

    from gateway.security import hash_password, valid_password

    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\r\n")
    why = valid_password(password)
    if why:
        print(f"password {why}", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0


def cmd_id_alias(args: argparse.Namespace) -> int:
    """Print the 1.6 idTag that stands for a 2.0.1 idToken longer than 20 characters (``long_id_tokens: alias``).

    The operator registers it in the 1.6 CSMS; the translator derives the same alias on every replica. The type may
    be given as ``--type TYPE`` or as a second argument (``id-alias TOKEN TYPE``).
    """
    from gateway.translate.v201_v16.context import IDTAG_MAX, id_alias

    kind = args.type or args.type_arg or "ISO14443"
    if args.type and args.type_arg and args.type != args.type_arg:
        print(f"two different types given: {args.type_arg} and --type {args.type}", file=sys.stderr)
        return 2
    if len(args.token) <= IDTAG_MAX:
        print(f"note: an idToken of up to {IDTAG_MAX} characters is sent as it is, not as this alias", file=sys.stderr)
    print(id_alias(args.token, kind))
    return 0


def cmd_report_compliance(args: argparse.Namespace) -> int:
    """The compliance report from the store the config names (gateway/quirks/report.py); ``--reset`` empties it."""
    import orjson

    from gateway.quirks.report import build, render_text
    from gateway.store import StoreUnavailable, open_store

    try:
        config = load_config(args.config)
    except ConfigError as e:
        _print_problems(args.config, e)
        return 2

    async def read() -> dict[str, object]:
        store = open_store(config.store.url, config.store.prefix)
        try:
            if args.reset:
                await store.compliance().clear()
                return {}
            return build(await store.compliance().read(), min_count=args.min_count)
        finally:
            await store.close()

    try:
        report = asyncio.run(read())
    except StoreUnavailable as e:
        print(f"store {config.store.url.split('@')[-1]} unavailable: {e}", file=sys.stderr)
        return 1
    if args.reset:
        print("compliance report emptied")
    elif args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        if config.store.url.startswith("memory:"):
            print("note: the memory store lives in the gateway process; this reads an empty one", file=sys.stderr)
        print(render_text(report), end="")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.ops.demo import run_csms_only, run_demo
    from gateway.ops.lifecycle import install_loop_policy

    args.chargers_set = args.chargers is not None
    args.chargers = args.chargers if args.chargers is not None else 3

    configure_logging("warning", "console")
    install_loop_policy()
    try:
        if args.csms_only:
            return asyncio.run(run_csms_only(args.csms_port))
        if args.site:
            from gateway.ops.site_sim import run_site_demo

            chargers = args.chargers if args.chargers_set else 8
            return asyncio.run(
                run_site_demo(chargers=chargers, duration=args.duration, port=args.port, admin_port=args.admin_port)
            )
        return asyncio.run(
            run_demo(chargers=args.chargers, duration=args.duration, port=args.port, admin_port=args.admin_port)
        )
    except KeyboardInterrupt:
        return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ocpp-gateway", description="OCPP proxy and message router")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the gateway")
    r.add_argument("--config", "-c", default="config/gateway.yaml", help="YAML config file")
    r.set_defaults(func=cmd_run)
    c = sub.add_parser("check-config", help="validate a config file; exit 2 when invalid")
    c.add_argument("file")
    c.set_defaults(func=cmd_check_config)
    h = sub.add_parser("hash-password", help="hash a charger password (stdin) for security.credentials_file")
    h.set_defaults(func=cmd_hash_password)
    a = sub.add_parser(
        "id-alias",
        help="print the 1.6 idTag (alias) the translator uses for a 2.0.1 idToken over 20 characters",
        description="Print the alias a 1.6 CSMS sees for a long 2.0.1 idToken (backend translation "
        "long_id_tokens: alias), to register it in that CSMS.",
    )
    a.add_argument("token", help="the 2.0.1 idToken, as the charger sends it")
    a.add_argument("type_arg", nargs="?", metavar="TYPE", choices=ID_TOKEN_TYPES, help="same as --type")
    a.add_argument("--type", choices=ID_TOKEN_TYPES, help="its IdTokenEnumType (default ISO14443)")
    a.set_defaults(func=cmd_id_alias)
    rp = sub.add_parser("report", help="reports from the store: compliance (per charger model)")
    rsub = rp.add_subparsers(dest="report", required=True)
    comp = rsub.add_parser(
        "compliance",
        help="per vendor/model/firmware: chargers, messages, violations, repairs, suggested profile rules",
    )
    comp.add_argument("--config", "-c", default="config/gateway.yaml", help="YAML config file (its store is read)")
    comp.add_argument("--json", action="store_true", help="the report as JSON (as GET /api/compliance)")
    comp.add_argument("--min-count", type=int, default=3, help="violations seen this often get a suggested rule")
    comp.add_argument("--reset", action="store_true", help="empty the report (every replica's counts)")
    comp.set_defaults(func=cmd_report_compliance)
    d = sub.add_parser("demo", help="gateway + built-in CSMS + simulated chargers in one process, until Ctrl-C")
    d.add_argument("--chargers", type=int, default=None, help="simulated chargers (default 3; 8 with --site)")
    d.add_argument(
        "--site",
        action="store_true",
        help="local load management: a 100 A site of chargers whose draw follows their profiles, EVs arriving and "
        "leaving, the controller keeping the site under its limit",
    )
    d.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0: until Ctrl-C)")
    d.add_argument("--port", type=int, default=9000, help="charger port of the demo gateway")
    d.add_argument("--admin-port", type=int, default=9001, help="admin/metrics port of the demo gateway")
    d.add_argument(
        "--csms-only",
        action="store_true",
        help="run only the built-in CSMS (1.6 and 2.0.1), for `ocpp-gateway run --config config/gateway.yaml`",
    )
    d.add_argument("--csms-port", type=int, default=9100, help="port of the built-in CSMS with --csms-only")
    d.set_defaults(func=cmd_demo)
    args = p.parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
