"""Typed configuration loaded from YAML, with every problem reported by its YAML path.

``load_config(path)`` returns a :class:`Config` or raises :class:`ConfigError` listing *all* problems found
(``routes[1].primary: unknown backend 'csms-z'``). ``${ENV_VAR}`` in any string is replaced from the environment
before validation; a missing variable is an error at that path. Unknown keys are errors. Only ``cli.py`` exits.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast
from urllib.parse import urlsplit

import yaml

from gateway.ocpp.versions import SUBPROTOCOLS

__all__ = [
    "AdminConfig",
    "BackendConfig",
    "Config",
    "ConfigError",
    "ListenConfig",
    "LoggingConfig",
    "RouteConfig",
    "SessionConfig",
    "StoreConfig",
    "load_config",
    "parse_config",
]

LogFormat = Literal["json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` holds ``(yaml_path, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{p}: {m}" for p, m in problems))


@dataclass(frozen=True, slots=True)
class ListenConfig:
    host: str = "0.0.0.0"
    port: int = 9000
    path_prefix: str = "/ocpp"
    max_frame_bytes: int = 65536
    ping_interval_s: float = 30.0
    #: close a charger that sent nothing (no frame, no pong) for this long; 0 = off
    idle_timeout_s: float = 0.0
    #: OCPP versions offered to chargers; "2.0" and "2.1" only when listed here
    ocpp_versions: tuple[str, ...] = ("1.6", "2.0.1")


@dataclass(frozen=True, slots=True)
class AdminConfig:
    host: str = "127.0.0.1"
    port: int = 9001
    #: bearer token for /api/*; None = no token (only sensible on loopback)
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class StoreConfig:
    url: str = "memory://"
    #: key namespace (see gateway/store/keys.py)
    prefix: str = "ocppgw"
    #: state writes queued while the store is slow or away before the oldest are dropped (counted)
    write_queue_max: int = 100_000


@dataclass(frozen=True, slots=True)
class BackendConfig:
    name: str
    url: str
    ocpp: str = "1.6"
    connect_timeout_s: float = 10.0
    #: after a drop mid-session, how long to keep trying before the charger is closed (1013)
    reconnect_grace_s: float = 30.0
    ping_interval_s: float = 30.0


@dataclass(frozen=True, slots=True)
class RouteConfig:
    match: str
    primary: str


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: LogLevel = "info"
    format: LogFormat = "json"


@dataclass(frozen=True, slots=True)
class SessionConfig:
    #: a CALL not answered in this time is forgotten (counted); a later answer is dropped
    call_timeout_s: float = 60.0
    #: CALLs a session holds behind its outstanding one, per direction
    max_queued_calls: int = 20
    #: on SIGTERM, how long in-flight CALLs may take to finish before chargers are closed with 1001
    shutdown_grace_s: float = 10.0


@dataclass(frozen=True, slots=True)
class Config:
    backends: Mapping[str, BackendConfig]
    routes: tuple[RouteConfig, ...]
    listen: ListenConfig = ListenConfig()
    admin: AdminConfig = AdminConfig()
    store: StoreConfig = StoreConfig()
    logging: LoggingConfig = LoggingConfig()
    session: SessionConfig = SessionConfig()


# ---------------------------------------------------------------------------------------------------------------
# validation helpers

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
T = TypeVar("T")


class _Checker:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.problems: list[tuple[str, str]] = []
        self.env = env

    def err(self, path: str, msg: str) -> None:
        self.problems.append((path, msg))

    def expand(self, node: Any, path: str) -> Any:
        """Replace ``${VAR}`` in every string, recursively."""
        if isinstance(node, str):

            def sub(m: re.Match[str]) -> str:
                name = m.group(1)
                if name not in self.env:
                    self.err(path, f"environment variable {name} is not set")
                    return ""
                return self.env[name]

            return _ENV.sub(sub, node)
        if isinstance(node, dict):
            return {k: self.expand(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [self.expand(v, f"{path}[{i}]") for i, v in enumerate(node)]
        return node

    def mapping(self, node: Any, path: str, allowed: set[str], required: set[str] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
        if node is None:
            node = {}
        if not isinstance(node, dict):
            self.err(path, f"must be a mapping, got {type(node).__name__}")
            return {}
        for k in node:
            if k not in allowed:
                self.err(f"{path}.{k}" if path else str(k), f"unknown key (allowed: {', '.join(sorted(allowed))})")
        for k in sorted(required - set(node)):
            self.err(f"{path}.{k}" if path else k, "is required")
        return {k: v for k, v in node.items() if k in allowed}

    def get(
        self,
        d: Mapping[str, Any],
        key: str,
        path: str,
        kind: type[T],
        default: T,
        check: Callable[[T], str | None] | None = None,
    ) -> T:
        if key not in d or d[key] is None:
            return default
        v = d[key]
        p = f"{path}.{key}" if path else key
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
            self.err(p, f"must be {kind.__name__}, got {type(v).__name__} {v!r}")
            return default
        if check is not None:
            msg = check(v)
            if msg:
                self.err(p, msg)
                return default
        return v


def _port(v: int) -> str | None:
    return None if 0 <= v <= 65535 else "must be a port number 0..65535"


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be > 0"


def _non_negative(v: float) -> str | None:
    return None if v >= 0 else "must be >= 0"


def _one_of(*choices: str) -> Callable[[str], str | None]:
    def check(v: str) -> str | None:
        return None if v in choices else f"must be one of {', '.join(choices)}; got {v!r}"

    return check


def _ws_url(v: str) -> str | None:
    u = urlsplit(v)
    if u.scheme not in ("ws", "wss") or not u.hostname:
        return f"must be a ws:// or wss:// URL, got {v!r}"
    return None


def _store_url(v: str) -> str | None:
    scheme = urlsplit(v).scheme
    if scheme not in ("memory", "redis", "rediss", "redis+sentinel", "unix"):
        return f"must be memory://, redis://, rediss:// or redis+sentinel://, got {v!r}"
    return None


def _path_prefix(v: str) -> str | None:
    if v and (not v.startswith("/") or v.endswith("/")):
        return "must start with '/' and not end with '/' (or be empty)"
    return None


def parse_config(raw: Any, env: Mapping[str, str] | None = None) -> Config:
    """Validate a parsed YAML document; raise :class:`ConfigError` with every problem."""
    c = _Checker(os.environ if env is None else env)
    raw = c.expand(raw, "")
    top = c.mapping(
        raw, "", {"listen", "admin", "store", "backends", "routes", "logging", "session"}, {"backends", "routes"}
    )

    d = c.mapping(
        top.get("listen"),
        "listen",
        {"host", "port", "path_prefix", "max_frame_bytes", "ping_interval_s", "idle_timeout_s", "ocpp_versions"},
    )
    dl = ListenConfig()
    versions_raw = d.get("ocpp_versions", list(dl.ocpp_versions))
    versions: list[str] = []
    if not isinstance(versions_raw, list) or not versions_raw:
        c.err("listen.ocpp_versions", "must be a non-empty list of OCPP versions")
    else:
        for i, v in enumerate(versions_raw):
            if str(v) not in SUBPROTOCOLS:
                c.err(f"listen.ocpp_versions[{i}]", f"must be one of {', '.join(SUBPROTOCOLS)}; got {v!r}")
            else:
                versions.append(str(v))
    listen = ListenConfig(
        host=c.get(d, "host", "listen", str, dl.host),
        port=c.get(d, "port", "listen", int, dl.port, _port),
        path_prefix=c.get(d, "path_prefix", "listen", str, dl.path_prefix, _path_prefix),
        max_frame_bytes=c.get(
            d,
            "max_frame_bytes",
            "listen",
            int,
            dl.max_frame_bytes,
            lambda v: None if 512 <= v <= 16 * 1024 * 1024 else "must be 512..16777216",
        ),
        ping_interval_s=c.get(d, "ping_interval_s", "listen", float, dl.ping_interval_s, _non_negative),
        idle_timeout_s=c.get(d, "idle_timeout_s", "listen", float, dl.idle_timeout_s, _non_negative),
        ocpp_versions=tuple(versions) or dl.ocpp_versions,
    )

    d = c.mapping(top.get("admin"), "admin", {"host", "port", "token"})
    da = AdminConfig()
    token = c.get(d, "token", "admin", str, "") or None
    admin = AdminConfig(
        host=c.get(d, "host", "admin", str, da.host), port=c.get(d, "port", "admin", int, da.port, _port), token=token
    )

    d = c.mapping(top.get("store"), "store", {"url", "prefix", "write_queue_max"})
    ds = StoreConfig()
    store = StoreConfig(
        url=c.get(d, "url", "store", str, ds.url, _store_url),
        prefix=c.get(
            d,
            "prefix",
            "store",
            str,
            ds.prefix,
            lambda v: None if re.fullmatch(r"[A-Za-z0-9_.-]+", v) else "letters, digits, _ . - only",
        ),
        write_queue_max=c.get(d, "write_queue_max", "store", int, ds.write_queue_max, _positive),
    )

    backends: dict[str, BackendConfig] = {}
    braw = top.get("backends")
    if "backends" in top and (not isinstance(braw, dict) or not braw):
        c.err("backends", "must be a non-empty mapping of backend name to its settings")
    elif isinstance(braw, dict):
        for name, node in braw.items():
            p = f"backends.{name}"
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
                c.err(p, "backend names use letters, digits, _ . - (1..64)")
                continue
            b = c.mapping(
                node, p, {"url", "ocpp", "connect_timeout_s", "reconnect_grace_s", "ping_interval_s"}, {"url"}
            )
            db = BackendConfig(name=name, url="")
            ocpp_v = b.get("ocpp", db.ocpp)
            backends[name] = BackendConfig(
                name=name,
                url=c.get(b, "url", p, str, "", _ws_url).rstrip("/"),
                ocpp=c.get({"ocpp": str(ocpp_v)}, "ocpp", p, str, db.ocpp, _one_of(*SUBPROTOCOLS)),
                connect_timeout_s=c.get(b, "connect_timeout_s", p, float, db.connect_timeout_s, _positive),
                reconnect_grace_s=c.get(b, "reconnect_grace_s", p, float, db.reconnect_grace_s, _non_negative),
                ping_interval_s=c.get(b, "ping_interval_s", p, float, db.ping_interval_s, _non_negative),
            )

    routes: list[RouteConfig] = []
    rraw = top.get("routes")
    if "routes" in top and (not isinstance(rraw, list) or not rraw):
        c.err("routes", "must be a non-empty list of {match, primary}")
    elif isinstance(rraw, list):
        for i, node in enumerate(rraw):
            p = f"routes[{i}]"
            r = c.mapping(node, p, {"match", "primary"}, {"match", "primary"})
            match = c.get(r, "match", p, str, "")
            primary = c.get(r, "primary", p, str, "")
            if "primary" in r and isinstance(r["primary"], str) and isinstance(braw, dict) and primary not in braw:
                c.err(f"{p}.primary", f"unknown backend {primary!r} (defined: {', '.join(map(str, braw))})")
            if match and primary:
                routes.append(RouteConfig(match=match, primary=primary))

    d = c.mapping(top.get("logging"), "logging", {"level", "format"})
    dlog = LoggingConfig()
    logging = LoggingConfig(
        level=cast(
            LogLevel, c.get(d, "level", "logging", str, dlog.level, _one_of("debug", "info", "warning", "error"))
        ),
        format=cast(LogFormat, c.get(d, "format", "logging", str, dlog.format, _one_of("json", "console"))),
    )

    d = c.mapping(top.get("session"), "session", {"call_timeout_s", "max_queued_calls", "shutdown_grace_s"})
    dse = SessionConfig()
    session = SessionConfig(
        call_timeout_s=c.get(d, "call_timeout_s", "session", float, dse.call_timeout_s, _positive),
        max_queued_calls=c.get(d, "max_queued_calls", "session", int, dse.max_queued_calls, _non_negative),
        shutdown_grace_s=c.get(d, "shutdown_grace_s", "session", float, dse.shutdown_grace_s, _non_negative),
    )

    if c.problems:
        raise ConfigError(c.problems)
    return Config(
        backends=backends,
        routes=tuple(routes),
        listen=listen,
        admin=admin,
        store=store,
        logging=logging,
        session=session,
    )


def load_config(path: str, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a YAML file."""
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
    except OSError as e:
        raise ConfigError([("<file>", f"cannot read {path}: {e.strerror}")]) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "?"
        raise ConfigError([("<file>", f"not valid YAML at {where}: {getattr(e, 'problem', e)}")]) from None
    return parse_config(raw, env)
