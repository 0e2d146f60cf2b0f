"""Gateway variants side by side in ONE batch, with the shared harness's load generator and CSMS stand-in.

    .venv/bin/python bench/compare.py                         # direct, gateway (memory), gateway-redis; N=100,1000
    .venv/bin/python bench/compare.py --ns 100,1000,5000 --reps 3 --idle 1000,5000
    .venv/bin/python bench/compare.py --targets gateway,gateway-base --base-exe ../bench-base/.venv/bin/ocpp-gateway

Every target is up at once; reps are the outer loop and targets the inner one, so slow drift of this shared machine
hits all targets alike. Each load run is ``../shared/bench/load.py --mode load`` (N chargers, one outstanding CALL
each, 80 % MeterValues / 20 % Heartbeat, OCPP 1.6) and reports msgs/s, RTT percentiles and the CPU of the target's
process; idle runs start fresh processes and report RSS per connected charger (its upstream link included).
The results go to ``bench/results/<UTC>.jsonl`` and a markdown table (medians, ratios vs direct) is printed by the
shared ``summarize.py``. Loopback only; every run is bounded (load.py enforces N <= 20000, duration <= 120 s).

Targets:
  direct          load -> stub (the baseline; the stub's own CPU is its "target CPU")
  nginx           load -> nginx 1.x, one worker (the shared harness's nginx/nginx.conf.in) -> stub; skipped with a
                  note when nginx is not installed
  relay           load -> bench/thin_relay.py (picows, per charger one upstream, bytes forwarded unparsed) -> stub:
                  the Python floor of a relay on this machine
  relay-uvloop    the same on uvloop
  gateway         load -> ocpp-gateway (memory store, metrics on, logging info) -> stub; on uvloop when it is
                  installed, as ``ocpp-gateway run`` is
  gateway-asyncio the same with OCPPGW_EVENT_LOOP=asyncio (the stdlib event loop, uvloop installed or not)
  gateway-translated    1.6 chargers -> the gateway translating to 2.0.1 -> the stub speaking 2.0.1
                  (bench/csms_stub_201.py: the shared stub, which also answers TransactionEvent); the load is the
                  same 1.6 MeterValues/Heartbeat mix, each MeterValues becoming a TransactionEvent ``Updated``
  gateway-redis   the same with the Redis store (a redis-server started here on a free port)
  gateway-mirror-down   the gateway with a mirror backend that is down (copies pile up in the outbox)
  gateway-redis-mirror-down   the same with the Redis store (the outbox is a Redis Stream)
  gateway-validate      the gateway validating every CALL and CALLRESULT against the official schemas
  gateway-quirks        the gateway with every shipped quirk profile configured (quirks: {shipped: all}), none of
                        which matches the load's chargers: the pass-through cost of profiles that do not apply
  gateway-base    the ``gateway`` config, run by another ocpp-gateway executable: ``--base-exe PATH`` (default: env
                  OCPPGW_BASE_GATEWAY). It is the code before a change, so that a restructured gateway and the code
                  it replaces are measured in one batch. Build it once from the old commit in a second venv, NOT
                  editable, so that later edits of the work tree never reach it:
                      git worktree add --detach ../bench-base HEAD && python3 -m venv ../bench-base/.venv
                      ../bench-base/.venv/bin/pip install '../bench-base[speed,bench]'
                  The harness (load.py, the stub) and every other target run from this interpreter's venv (``gateway``
                  is the ocpp-gateway next to it); run this script with the base venv's python for an A/A check.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OCPPGW_SHARED_BENCH", ROOT.parent / "shared" / "bench"))
PY = sys.executable
GATEWAY = str(Path(PY).parent / "ocpp-gateway")
STUB_PORT = 18001
#: the 2.0.1 stub of ``gateway-translated`` (started only when that target is in the batch)
STUB201_PORT = 18002
NGINX_PORT = 18100

CONFIG = """listen:   {{host: 127.0.0.1, port: {port}, path_prefix: /ocpp, max_frame_bytes: 65536, ping_interval_s: 30}}
admin:    {{host: 127.0.0.1, port: {admin}}}
store:    {{url: "{store}"}}
backends:
  bench: {{url: "ws://127.0.0.1:{stub}/ocpp", ocpp: "{backend_ocpp}"}}
  down: {{url: "ws://127.0.0.1:9/ocpp", ocpp: "1.6", connect_timeout_s: 1}}
routes:
  - {{match: "*", primary: bench{mirrors}}}
logging:  {{level: info, format: json}}
session:  {{validate_schemas: {validate}}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60.0) -> None:  # a gateway starts in ~1 s (was ~6 s)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


class Procs:
    """Child processes, stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self, name: str, argv: list[str], port: int | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.work / f"{name}.log", "ab")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.procs[name] = p
        if port is not None:
            wait_port(port)
        return p

    def stop(self, name: str) -> None:
        p = self.procs.pop(name, None)
        if p is None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


@contextlib.contextmanager
def redis_server(work: Path) -> Iterator[str]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server not found (scripts/test.sh installs it)")
    port = free_port()
    p = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(work)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        p.terminate()
        p.wait(10)


def start_targets(
    procs: Procs, targets: list[str], redis_url: str, base_exe: str | None = None
) -> dict[str, tuple[str, int]]:
    """Start the stub and every gateway target; name -> (charger URL, pid). ``gateway-base`` runs ``base_exe``."""
    stub = procs.start("stub", [PY, str(SHARED / "csms_stub.py"), "--port", str(STUB_PORT)], STUB_PORT)
    if "gateway-translated" in targets:
        argv = [PY, str(ROOT / "bench" / "csms_stub_201.py"), "--port", str(STUB201_PORT)]
        procs.start("stub201", argv, STUB201_PORT)
    upstream = f"ws://127.0.0.1:{STUB_PORT}/ocpp"
    out: dict[str, tuple[str, int]] = {}
    for i, t in enumerate(targets):
        port, admin = 18300 + 10 * i, 18301 + 10 * i
        if t == "direct":
            out[t] = (f"ws://127.0.0.1:{STUB_PORT}/ocpp", stub.pid)
            continue
        if t == "nginx":
            out[t] = (f"ws://127.0.0.1:{NGINX_PORT}/ocpp", start_nginx(procs).pid)
            continue
        if t in ("relay", "relay-uvloop"):
            argv = [PY, str(ROOT / "bench" / "thin_relay.py"), "--port", str(port), "--upstream", upstream]
            p = procs.start(t, argv + (["--uvloop"] if t == "relay-uvloop" else []), port)
            out[t] = (f"ws://127.0.0.1:{port}/ocpp", p.pid)
            continue
        store = redis_url if t.startswith("gateway-redis") else "memory://"
        mirrors = ", mirrors: [down]" if t.endswith("mirror-down") else ""
        validate = "true" if t == "gateway-validate" else "false"
        translated = t == "gateway-translated"
        cfg = procs.work / f"{t}.yaml"
        text = CONFIG.format(
            port=port, admin=admin, store=store, stub=STUB201_PORT if translated else STUB_PORT, mirrors=mirrors,
            validate=validate, backend_ocpp="2.0.1" if translated else "1.6",
        )  # fmt: skip
        cfg.write_text(text + ("quirks:   {shipped: all}\n" if t == "gateway-quirks" else ""))
        exe = GATEWAY
        if t == "gateway-base":
            if base_exe is None:
                raise SystemExit("gateway-base needs --base-exe PATH or OCPPGW_BASE_GATEWAY")
            exe = base_exe
        env = {**os.environ, "OCPPGW_EVENT_LOOP": "asyncio"} if t == "gateway-asyncio" else None
        p = procs.start(t, [exe, "run", "--config", str(cfg)], port, env)
        out[t] = (f"ws://127.0.0.1:{port}/ocpp", p.pid)
    return out


def start_nginx(procs: Procs) -> subprocess.Popen[bytes]:
    """nginx with the shared harness's config (one worker), in the batch's work directory."""
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if exe is None:
        raise SystemExit("target nginx: nginx is not installed (apt-get install nginx)")
    prefix = procs.work / "nginx"
    prefix.mkdir(exist_ok=True)
    conf = (SHARED / "nginx" / "nginx.conf.in").read_text()
    conf = conf.replace("@PORT@", str(NGINX_PORT)).replace("@UPSTREAM_PORT@", str(STUB_PORT))
    (prefix / "nginx.conf").write_text(conf.replace("@PREFIX@", str(prefix)))
    return procs.start("nginx", [exe, "-c", str(prefix / "nginx.conf"), "-p", str(prefix)], NGINX_PORT)


def load(
    out: Path,
    name: str,
    url: str,
    pid: int,
    stub_pid: int,
    n: int,
    args: argparse.Namespace,
    rep: int,
    mode: str = "load",
) -> None:
    argv = [
        PY,
        str(SHARED / "load.py"),
        "--mode",
        mode,
        "--name",
        name,
        "--target",
        url,
        "-n",
        str(n),
        "--pid",
        str(pid),
        "--stub-pid",
        str(stub_pid),
        "--tag",
        f"rep={rep}",
    ]
    if mode == "load":
        argv += ["--duration", str(args.duration), "--warmup", "1", "--quiet-wait", str(args.quiet_wait)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    if r.returncode != 0 or not line.startswith("{"):
        line = f'{{"target": "{name}", "mode": "{mode}", "n": {n}, "tag": "rep={rep}", "failed": true}}'
        print(r.stderr[-2000:], file=sys.stderr)
    with out.open("a") as fh:
        fh.write(line + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default="direct,gateway,gateway-redis")
    ap.add_argument("--ns", default="100,1000")
    ap.add_argument("--idle", default="1000", help="idle N values ('' for none)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float, default=6)
    ap.add_argument("--quiet-wait", type=float, default=10)
    ap.add_argument(
        "--base-exe",
        default=os.environ.get("OCPPGW_BASE_GATEWAY") or None,
        help="the ocpp-gateway executable of the gateway-base target (default: env OCPPGW_BASE_GATEWAY)",
    )
    args = ap.parse_args()
    targets = args.targets.split(",")
    base_exe = None
    if "gateway-base" in targets:
        if not args.base_exe:
            ap.error(
                "target gateway-base needs the ocpp-gateway executable of the code before the change: "
                "--base-exe PATH or env OCPPGW_BASE_GATEWAY (see this script's --help for how to build it)"
            )
        base_exe = shutil.which(args.base_exe)
        if base_exe is None:
            ap.error(f"--base-exe {args.base_exe}: not an executable file")
        base_exe = str(Path(base_exe).resolve())
        if base_exe == str(Path(GATEWAY).resolve()):
            print(f"# gateway-base runs {base_exe}, the same executable as gateway: an A/A check", file=sys.stderr)
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    out = ROOT / "bench" / "results" / (time.strftime("%Y-%m-%dT%H%M%SZ", time.gmtime()) + ".jsonl")
    import aiohttp
    import picows

    meta = {
        "meta": True,
        "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "targets": targets,
        "python": sys.version.split()[0],
        "aiohttp": aiohttp.__version__,
        "picows": picows.__version__,
        "nginx": nginx_version() if "nginx" in targets else "nginx not in this batch",
        "gateway_exe": GATEWAY,
        "base_exe": base_exe,
        "ncpu": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "env": {"NS": args.ns, "REPS": args.reps, "DURATION": args.duration, "IDLE_NS": args.idle},
    }
    import json

    out.write_text(json.dumps(meta) + "\n")
    print(f"# results -> {out}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="ocppgw-bench-") as tmp:
        work = Path(tmp)
        with redis_server(work) as redis_url:
            procs = Procs(work)
            try:
                urls = start_targets(procs, targets, redis_url, base_exe)
                stub_pid = urls["direct"][1] if "direct" in urls else procs.procs["stub"].pid
                stub201 = procs.procs.get("stub201")
                for rep in range(1, args.reps + 1):
                    for n in (int(x) for x in args.ns.split(",") if x):
                        for t in targets:
                            print(f"load rep={rep} n={n} target={t}", file=sys.stderr)
                            sp = stub201.pid if t == "gateway-translated" and stub201 is not None else stub_pid
                            load(out, t, urls[t][0], urls[t][1], sp, n, args, rep)
                            time.sleep(1)
            finally:
                procs.stop_all()
            for rep in range(1, args.reps + 1):
                for n in (int(x) for x in args.idle.split(",") if x):
                    for t in targets:
                        print(f"idle rep={rep} n={n} target={t}", file=sys.stderr)
                        procs = Procs(work)
                        try:
                            urls = start_targets(procs, [t], redis_url, base_exe)
                            time.sleep(0.5)
                            stub = procs.procs["stub201" if t == "gateway-translated" else "stub"]
                            load(out, t, urls[t][0], urls[t][1], stub.pid, n, args, rep, "idle")
                        finally:
                            procs.stop_all()
    subprocess.run([PY, str(SHARED / "summarize.py"), str(out)], check=False, stdout=open(out.with_suffix(".md"), "w"))
    if "gateway" in targets and "gateway-base" in targets:
        with open(out.with_suffix(".md"), "a") as md:
            md.write(paired_ratios(out))
    print(out.with_suffix(".md").read_text())


def nginx_version() -> str:
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    try:
        return subprocess.run([exe, "-v"], capture_output=True, text=True, check=False).stderr.strip()
    except OSError:
        return "nginx not installed"


def paired_ratios(path: Path) -> str:
    """gateway / gateway-base CPU per round trip, rep by rep (the two ran seconds apart, so a drift of this shared
    machine hits both): less noisy than the ratio of the medians."""
    import json
    import statistics

    by: dict[tuple[int, str], dict[str, float]] = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r.get("mode") == "load" and not r.get("failed") and r.get("msgs_per_s"):
            by.setdefault((r["n"], r["tag"]), {})[r["target"]] = 1e4 * r["cpu_pct"]["target"] / r["msgs_per_s"]
    out = []
    for n in sorted({n for n, _ in by}):
        ratios = [v["gateway"] / v["gateway-base"] for (m, _), v in by.items() if m == n and len(v) >= 2 and
                  "gateway" in v and "gateway-base" in v]  # fmt: skip
        if ratios:
            out.append(
                f"\nN = {n}: gateway / gateway-base CPU per round trip, per rep: "
                f"{', '.join(f'{x:.3f}' for x in ratios)}; median {statistics.median(ratios):.3f}\n"
            )
    return "".join(out)


if __name__ == "__main__":
    main()
