"""Typed configuration loaded from YAML, with every problem reported by its YAML path.

``load_config(path)`` returns a :class:`Config` or raises :class:`ConfigError` listing *all* problems found
(``routes[1].primary: unknown backend 'csms-z'``). ``${ENV_VAR}`` in any string is replaced from the environment
before validation; a missing variable is an error at that path. Unknown keys are errors. Only ``cli.py`` exits.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast
from urllib.parse import urlsplit

import yaml

from gateway.ocpp.versions import SUBPROTOCOLS, OcppVersion, parse_version
from gateway.offline.config import OfflineConfig, parse_offline
from gateway.quirks.profile import ComplianceConfig, QuirksConfig, parse_compliance, parse_quirks
from gateway.sites.config import SiteConfig, parse_sites

__all__ = [
    "config_warnings",
    "AdminConfig",
    "BackendAuthConfig",
    "BackendConfig",
    "BackendTlsConfig",
    "Config",
    "ConfigError",
    "ListenConfig",
    "LoggingConfig",
    "RouteConfig",
    "SecurityConfig",
    "ServerTlsConfig",
    "SessionConfig",
    "StoreConfig",
    "TapConfig",
    "TapHttpConfig",
    "TapRedisStreamConfig",
    "VerificationCacheConfig",
    "load_config",
    "parse_config",
]

LogFormat = Literal["json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]
TlsVersion = Literal["1.2", "1.3"]
PasswordSource = Literal["store", "charger", "template"]
RotationPolicy = Literal["passthrough", "terminate"]


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` holds ``(yaml_path, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{p}: {m}" for p, m in problems))


@dataclass(frozen=True, slots=True)
class ServerTlsConfig:
    """TLS of a listener (chargers or admin). ``cert`` holds the whole chain to serve, leaf first."""

    cert: str
    key: str
    #: CA bundle that charger certificates must chain to (profile 3); requested from every client when set
    client_ca: str | None = None
    #: optional CRL (PEM) checked for the client certificate (leaf)
    crl: str | None = None
    min_version: TlsVersion = "1.2"
    #: OpenSSL cipher string for TLS 1.2; None: the suites OCPP requires (gateway.security.OCPP_TLS12_CIPHERS)
    ciphers: str | None = None


@dataclass(frozen=True, slots=True)
class ListenConfig:
    #: label in logs and metrics names; default "listen[<i>]"
    name: str = "listen[0]"
    host: str = "0.0.0.0"
    port: int = 9000
    path_prefix: str = "/ocpp"
    max_frame_bytes: int = 65536
    ping_interval_s: float = 30.0
    #: close a charger that sent nothing (no frame, no pong) for this long; 0 = off
    idle_timeout_s: float = 0.0
    #: OCPP versions offered to chargers; "2.0" and "2.1" only when listed here
    ocpp_versions: tuple[OcppVersion, ...] = ("1.6", "2.0.1")
    #: the security profile chargers on this listener must reach (a route may override it)
    security_profile: int = 0
    tls: ServerTlsConfig | None = None
    #: TLS handshakes at once, at most (gateway/edge/listener.py: fewer while the event loop lags); 0 = no queue
    max_tls_handshakes: int = 1024


@dataclass(frozen=True, slots=True)
class AdminConfig:
    host: str = "127.0.0.1"
    port: int = 9001
    #: bearer token for /api/*; None = no token (allowed on a loopback address only)
    token: str | None = field(default=None, repr=False)
    tls: ServerTlsConfig | None = None


@dataclass(frozen=True, slots=True)
class VerificationCacheConfig:
    """``security.verification_cache``: successful password checks remembered in the store, shared by every process
    and replica, as HMAC-SHA256(secret, charger id, stored hash, password) (gateway/store/keys.py ``credproof``)."""

    #: the HMAC key: the same on every replica, at least 32 characters (e.g. ``openssl rand -hex 32``)
    secret: str = field(default="", repr=False)
    #: how long an entry lives after the last check that read it
    ttl_s: float = 30 * 86400.0


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    #: YAML file of charger credentials imported into the store at start (see docs/security.md)
    credentials_file: str | None = None
    #: failed Basic auth attempts allowed per charger id / per remote address in ``auth_failure_window_s``
    auth_failures_per_charger: int = 5
    auth_failures_per_address: int = 50
    auth_failure_window_s: float = 60.0
    #: password hashes computed at once (each ~50 ms of CPU in a worker thread)
    hash_concurrency: int = 4
    #: None: successful checks are remembered per process only (lost at a restart)
    verification_cache: VerificationCacheConfig | None = None


@dataclass(frozen=True, slots=True)
class StoreConfig:
    url: str = "memory://"
    #: key namespace (see gateway/store/keys.py)
    prefix: str = "ocppgw"
    #: state writes queued while the store is slow or away before the oldest are dropped (counted)
    write_queue_max: int = 100_000
    #: a charger's ownership key lives this long unless its process refreshes it (every third of it): the time a
    #: process killed with SIGKILL keeps its chargers in the fleet list
    owner_ttl_s: float = 30.0


@dataclass(frozen=True, slots=True)
class BackendTlsConfig:
    """TLS toward a backend (wss://). The backend's certificate is verified unless ``verify`` is false."""

    #: CA bundle for the backend's certificate; None: the system's trust store
    ca: str | None = None
    #: client certificate (chain) and key for profile 3, one for every charger
    cert: str | None = None
    key: str | None = None
    #: or one per charger: <cert_dir>/<charger id>.pem and <charger id>.key (CN = charger id, as profile 3 wants)
    cert_dir: str | None = None
    verify: bool = True
    min_version: TlsVersion = "1.2"
    ciphers: str | None = None


@dataclass(frozen=True, slots=True)
class BackendAuthConfig:
    """Basic auth toward a backend (profiles 1 and 2): username = charger id."""

    #: store: the charger's upstream password in the credential store; charger: the password the charger presented
    #: to the gateway; template: ``password_template``. A password stored for the charger always wins.
    password_from: PasswordSource = "store"
    password_template: str | None = field(default=None, repr=False)
    #: what to do when this backend sets the charger's Basic auth password (AuthorizationKey / BasicAuthPassword)
    password_rotation: RotationPolicy = "passthrough"


@dataclass(frozen=True, slots=True)
class BackendConfig:
    name: str
    url: str
    ocpp: OcppVersion = "1.6"
    connect_timeout_s: float = 10.0
    #: after a drop mid-session, how long to keep trying before the charger is closed (1013)
    reconnect_grace_s: float = 30.0
    ping_interval_s: float = 30.0
    security_profile: int = 0
    tls: BackendTlsConfig = BackendTlsConfig()
    auth: BackendAuthConfig = BackendAuthConfig()
    #: how chargers of another OCPP version are translated to this backend (validated; see ``_translation``)
    translation: Mapping[str, Any] = field(default_factory=dict, hash=False)
    #: admission pacing, per process: at most this many new charger links per second toward this backend (None: no
    #: limit); a charger that would wait more than ``max_connect_wait_s`` for its turn gets 503 with Retry-After.
    #: Not compared: a reload that changes only these applies them to new admissions and reconnects nobody.
    max_connects_per_s: float | None = field(default=None, compare=False)
    max_connect_wait_s: float = field(default=5.0, compare=False)
    #: the pace of the ride-through journal's replay toward this backend, CALLs per second for the whole process
    #: (routes[].offline; gateway/app/ride.py)
    replay_per_s: float = field(default=50.0, compare=False)


@dataclass(frozen=True, slots=True)
class RouteConfig:
    match: str
    primary: str
    #: overrides the listener's security_profile for the chargers of this route
    security_profile: int | None = None
    #: when set, only these charger ids are admitted on this route
    allowlist: frozenset[str] | None = None
    #: backends that get a copy of every charger CALL (answers read, never sent to the charger)
    mirrors: tuple[str, ...] = ()
    #: CALLs from a mirror toward the charger: None = deny all; else the actions forwarded
    mirror_calls_allow: frozenset[str] | None = None
    #: bounds of each (charger, mirror) outbox: entries, and age in seconds
    outbox_max_len: int = 10_000
    outbox_max_age_s: float = 7 * 86400.0
    #: what happens while the primary is unreachable (gateway/offline/config.py)
    offline: OfflineConfig = field(default_factory=OfflineConfig)


TAP_DIRECTIONS = ("from_charger", "from_backend")
TAP_MESSAGE_TYPES = ("call", "callresult", "callerror", "send", "callresulterror")  # the last two: OCPP 2.1


@dataclass(frozen=True, slots=True)
class TapRedisStreamConfig:
    """XADD every event (field ``event``: the JSON document) to ``key`` on the store's Redis, ``MAXLEN ~ max_len``."""

    key: str
    max_len: int = 100_000


@dataclass(frozen=True, slots=True)
class TapHttpConfig:
    """POST events as a JSON array, up to ``batch`` per request; 2xx acknowledges the batch, anything else retries."""

    url: str
    batch: int = 100
    #: wait this long for a batch to fill before sending a smaller one (0: send at once)
    flush_interval_s: float = 1.0
    timeout_s: float = 10.0
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    #: back-off after a failed POST: doubles from ``retry_initial_s`` up to ``retry_max_s`` (with jitter)
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0


@dataclass(frozen=True, slots=True)
class TapConfig:
    """A copy of selected messages, as JSON events, to one sink (see gateway/fanout/taps.py). Filters: None = all."""

    name: str
    redis_stream: TapRedisStreamConfig | None = None
    http: TapHttpConfig | None = None
    actions: frozenset[str] | None = None
    directions: frozenset[str] = frozenset(TAP_DIRECTIONS)
    message_types: frozenset[str] = frozenset(TAP_MESSAGE_TYPES)
    #: route origins (``config:routes[i]``, ``override``); routes given by their ``match`` are resolved here
    routes: frozenset[str] | None = None
    outbox_max_len: int = 100_000
    outbox_max_age_s: float = 7 * 86400.0


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
    #: then chargers are closed evenly spread over this window (0: all at once), not all reconnecting at once
    drain_window_s: float = 0.0
    #: validate every CALL (both ways) against the official schema of its version, and every CALLRESULT (counted)
    validate_schemas: bool = False


@dataclass(frozen=True, slots=True)
class Config:
    backends: Mapping[str, BackendConfig]
    routes: tuple[RouteConfig, ...]
    #: the first listener (``listeners[0]``)
    listen: ListenConfig = ListenConfig()
    admin: AdminConfig = AdminConfig()
    store: StoreConfig = StoreConfig()
    logging: LoggingConfig = LoggingConfig()
    session: SessionConfig = SessionConfig()
    #: every charger listener; ``listen`` in YAML is one mapping or a list of them
    listeners: tuple[ListenConfig, ...] = ()
    security: SecurityConfig = SecurityConfig()
    #: processes sharing the charger listener (SO_REUSEPORT); more than 1 needs a Redis store
    workers: int = 1
    #: copies of selected messages to Redis Streams or HTTP endpoints (gateway/fanout/taps.py)
    taps: tuple[TapConfig, ...] = ()
    #: repair profiles of non-conforming chargers, and the per-model compliance report (gateway/quirks/)
    quirks: QuirksConfig = field(default_factory=QuirksConfig)
    compliance: ComplianceConfig = field(default_factory=ComplianceConfig)
    #: local load management: sites whose grid connection the controller keeps under its limit (gateway/sites/)
    sites: tuple[SiteConfig, ...] = ()

    def all_listeners(self) -> tuple[ListenConfig, ...]:
        return self.listeners or (self.listen,)


def config_warnings(config: Config) -> list[tuple[str, str]]:
    """``(yaml path, message)`` of what is valid but probably not meant (``check-config`` prints them, the gateway
    logs them at start): ``session.validate_schemas`` with OCPP 2.0 offered or spoken, which has no official schemas
    in the gateway (2.0.1's are not 2.0's, see gateway/ocpp/schemas.py): 2.0 sessions are not validated."""
    if not config.session.validate_schemas:
        return []
    out: list[tuple[str, str]] = []
    msg = "OCPP 2.0 has no schemas in the gateway: session.validate_schemas does not apply to 2.0 sessions"
    listeners = config.all_listeners()
    for i, lc in enumerate(listeners):
        if "2.0" in lc.ocpp_versions:
            out.append((f"listen[{i}].ocpp_versions" if len(listeners) > 1 else "listen.ocpp_versions", msg))
    for name, b in config.backends.items():
        if b.ocpp == "2.0":
            out.append((f"backends.{name}.ocpp", msg))
    return out


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


_LISTEN_KEYS = {
    "name",
    "host",
    "port",
    "path_prefix",
    "max_frame_bytes",
    "ping_interval_s",
    "idle_timeout_s",
    "ocpp_versions",
    "security_profile",
    "tls",
    "max_tls_handshakes",
}


def _profile(v: int) -> str | None:
    return None if 0 <= v <= 3 else "must be a security profile 0..3"


def _server_tls(c: _Checker, node: Any, path: str, mtls: bool = True) -> ServerTlsConfig | None:
    if node is None:
        return None
    keys = {"cert", "key", "min_version", "ciphers"} | ({"client_ca", "crl"} if mtls else set())
    d = c.mapping(node, path, keys, {"cert", "key"})
    client_ca = c.get(d, "client_ca", path, str, "") or None
    crl = c.get(d, "crl", path, str, "") or None
    if crl and not client_ca:
        c.err(f"{path}.crl", "needs client_ca (a CRL is checked for client certificates)")
    return ServerTlsConfig(
        cert=c.get(d, "cert", path, str, ""),
        key=c.get(d, "key", path, str, ""),
        client_ca=client_ca,
        crl=crl,
        min_version=_tls_version(c, d, path),
        ciphers=c.get(d, "ciphers", path, str, "") or None,
    )


def _ambiguous_version(c: _Checker, value: Any, path: str) -> bool:
    """An unquoted ``2.0`` is the YAML number 2.0: it reads as "2.0", which is rarely what was meant (OCPP 2.0.1
    is). Say so rather than guess. (1.6 and 2.1 as numbers are unambiguous and accepted.)"""
    if isinstance(value, float) and value == 2.0:
        c.err(path, 'the YAML number 2.0: write "2.0.1" for OCPP 2.0.1, or "2.0" quoted for OCPP 2.0')
        return True
    return False


def _listener(c: _Checker, node: Any, path: str, index: int) -> ListenConfig:
    d = c.mapping(node, path, _LISTEN_KEYS)
    dl = ListenConfig()
    versions_raw = d.get("ocpp_versions", list(dl.ocpp_versions))
    versions: list[OcppVersion] = []
    if not isinstance(versions_raw, list) or not versions_raw:
        c.err(f"{path}.ocpp_versions", "must be a non-empty list of OCPP versions")
    else:
        for i, v in enumerate(versions_raw):
            if _ambiguous_version(c, v, f"{path}.ocpp_versions[{i}]"):
                continue
            if str(v) not in SUBPROTOCOLS:
                c.err(f"{path}.ocpp_versions[{i}]", f"must be one of {', '.join(SUBPROTOCOLS)}; got {v!r}")
            else:
                versions.append(parse_version(str(v)))
    tls = _server_tls(c, d.get("tls"), f"{path}.tls")
    profile = c.get(d, "security_profile", path, int, 0, _profile)
    if profile >= 2 and tls is None:
        c.err(f"{path}.security_profile", f"profile {profile} needs tls (cert, key)")
    if profile == 3 and tls is not None and not tls.client_ca:
        c.err(f"{path}.tls.client_ca", "is required for security profile 3 (mutual TLS)")
    return ListenConfig(
        name=c.get(
            d,
            "name",
            path,
            str,
            f"listen[{index}]",
            lambda v: (
                None if re.fullmatch(r"[A-Za-z0-9_.\[\]-]{1,64}", v) else "letters, digits, _ . - [ ] only (1..64)"
            ),
        ),
        host=c.get(d, "host", path, str, dl.host),
        port=c.get(d, "port", path, int, dl.port, _port),
        path_prefix=c.get(d, "path_prefix", path, str, dl.path_prefix, _path_prefix),
        max_frame_bytes=c.get(
            d,
            "max_frame_bytes",
            path,
            int,
            dl.max_frame_bytes,
            lambda v: None if 512 <= v <= 16 * 1024 * 1024 else "must be 512..16777216",
        ),
        ping_interval_s=c.get(d, "ping_interval_s", path, float, dl.ping_interval_s, _non_negative),
        idle_timeout_s=c.get(d, "idle_timeout_s", path, float, dl.idle_timeout_s, _non_negative),
        ocpp_versions=tuple(versions) or dl.ocpp_versions,
        security_profile=profile,
        tls=tls,
        max_tls_handshakes=c.get(
            d,
            "max_tls_handshakes",
            path,
            int,
            dl.max_tls_handshakes,
            lambda v: None if 0 <= v <= 65536 else "must be 0..65536 (0: no queue)",
        ),
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _backend_tls(c: _Checker, node: Any, path: str) -> BackendTlsConfig:
    d = c.mapping(node, path, {"ca", "cert", "key", "cert_dir", "verify", "min_version", "ciphers"})
    cert = c.get(d, "cert", path, str, "") or None
    key = c.get(d, "key", path, str, "") or None
    cert_dir = c.get(d, "cert_dir", path, str, "") or None
    if bool(cert) != bool(key):
        c.err(f"{path}.{'key' if cert else 'cert'}", "cert and key go together")
    if cert and cert_dir:
        c.err(f"{path}.cert_dir", "use either cert/key (one for all chargers) or cert_dir (one per charger)")
    return BackendTlsConfig(
        ca=c.get(d, "ca", path, str, "") or None,
        cert=cert,
        key=key,
        cert_dir=cert_dir,
        verify=c.get(d, "verify", path, bool, True),
        min_version=_tls_version(c, d, path),
        ciphers=c.get(d, "ciphers", path, str, "") or None,
    )


def _template(v: str) -> str | None:
    try:
        v.format(charger_id="x")
    except (KeyError, IndexError, ValueError):
        return "may only use the placeholder {charger_id} (double other braces)"
    return None


def _backend_auth(c: _Checker, node: Any, path: str) -> BackendAuthConfig:
    d = c.mapping(node, path, {"password_from", "password_template", "password_rotation"})
    template = c.get(d, "password_template", path, str, "", _template) or None
    source = c.get(
        d, "password_from", path, str, "template" if template else "store", _one_of("store", "charger", "template")
    )
    if source == "template" and not template:
        c.err(f"{path}.password_template", "is required when password_from is template")
    return BackendAuthConfig(
        password_from=cast(PasswordSource, source),
        password_template=template,
        password_rotation=cast(
            RotationPolicy,
            c.get(d, "password_rotation", path, str, "passthrough", _one_of("passthrough", "terminate")),
        ),
    )


_ID_TOKEN_TYPES = (
    "Central", "eMAID", "ISO14443", "ISO15693", "KeyCode", "Local", "MacAddress", "NoAuthorization",
)  # fmt: skip


def _idtag(v: str) -> str | None:
    return None if 1 <= len(v) <= 20 else "must be 1..20 characters (a 1.6 idTag)"


def _translation(c: _Checker, node: Any, path: str) -> dict[str, Any]:
    """``backends.<name>.translation``: options of 2.0.1 chargers translated to this (1.6) backend.

    See :class:`gateway.translate.v201_v16.context.Options` for what each one does.
    """
    d = c.mapping(
        node,
        path,
        {
            "security_extension", "wrap_untranslatable", "default_id_token_type", "long_id_tokens",
            "free_vend_idtag", "soft_reset_as", "remote_start_ttl_s", "variables_per_message",
            "charge_point_vendor", "connector_map",
        },
    )  # fmt: skip
    out: dict[str, Any] = {}
    for key in ("security_extension", "wrap_untranslatable"):
        if key in d:
            out[key] = c.get(d, key, path, bool, False)
    checks: dict[str, tuple[type[Any], Callable[[Any], str | None]]] = {
        "default_id_token_type": (str, _one_of(*_ID_TOKEN_TYPES)),
        "long_id_tokens": (str, _one_of("reject", "alias")),
        "free_vend_idtag": (str, _idtag),
        "charge_point_vendor": (str, _idtag),
        "soft_reset_as": (str, _one_of("Immediate", "OnIdle")),
        "remote_start_ttl_s": (int, _positive),
        "variables_per_message": (int, _positive),
    }
    for key, (kind, check) in checks.items():
        if key in d and d[key] is not None:
            value = c.get(d, key, path, kind, None, check)
            if value is not None:
                out[key] = value
    raw = d.get("connector_map")
    if raw is not None:
        cmap: dict[int, tuple[int, int]] = {}
        if not isinstance(raw, dict):
            c.err(f"{path}.connector_map", "must map 1.6 connectorId to [evse id, connector id]")
        else:
            for k, v in raw.items():
                ok_pair = isinstance(v, list) and len(v) == 2 and all(type(x) is int and x >= 1 for x in v)
                if type(k) is not int or k < 1 or not ok_pair:
                    c.err(f"{path}.connector_map.{k}", "must be connectorId >= 1: [evse id >= 1, connector id >= 1]")
                    continue
                cmap[k] = (v[0], v[1])
        out["connector_map"] = cmap
    return out


_TAP_KEYS = {"name", "actions", "directions", "message_types", "routes", "redis_stream", "http", "outbox"}
_TAP_HTTP_KEYS = {"url", "batch", "flush_interval_s", "timeout_s", "headers", "retry_initial_s", "retry_max_s"}


def _names(c: _Checker, d: Mapping[str, Any], key: str, path: str, choices: tuple[str, ...] = ()) -> list[str] | None:
    """An optional non-empty list of strings (from ``choices`` when given); None when absent or wrong."""
    raw = d.get(key)
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw or not all(isinstance(x, str) and x for x in raw):
        c.err(f"{path}.{key}", "must be a non-empty list of strings")
        return None
    bad = [j for j, x in enumerate(raw) if choices and x not in choices]
    for j in bad:
        c.err(f"{path}.{key}[{j}]", f"must be one of {', '.join(choices)}; got {raw[j]!r}")
    return None if bad else list(raw)


def _route_origin(entry: str, routes_raw: Any) -> str | None:
    """``config:routes[i]`` / ``override`` as they are, or the origin of the first route whose match is ``entry``."""
    routes = routes_raw if isinstance(routes_raw, list) else []
    m = re.fullmatch(r"config:routes\[(\d+)\]", entry)
    if entry == "override" or (m is not None and int(m.group(1)) < len(routes)):
        return entry
    for j, r in enumerate(routes):
        if isinstance(r, dict) and r.get("match") == entry:
            return f"config:routes[{j}]"
    return None


def _tap_http(c: _Checker, node: Any, path: str) -> TapHttpConfig:
    d = c.mapping(node, path, _TAP_HTTP_KEYS, {"url"})
    dh = TapHttpConfig(url="")
    headers = d.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        c.err(f"{path}.headers", "must be a mapping of header name to string value")
        headers = {}
    initial = c.get(d, "retry_initial_s", path, float, dh.retry_initial_s, _positive)
    most = c.get(d, "retry_max_s", path, float, dh.retry_max_s, _positive)
    if most < initial:
        c.err(f"{path}.retry_max_s", "must be >= retry_initial_s")
    return TapHttpConfig(
        url=c.get(
            d, "url", path, str, "",
            lambda v: None if urlsplit(v).scheme in ("http", "https") and urlsplit(v).hostname
            else f"must be an http:// or https:// URL, got {v!r}",
        ),
        batch=c.get(d, "batch", path, int, dh.batch, lambda v: None if 1 <= v <= 10_000 else "must be 1..10000"),
        flush_interval_s=c.get(d, "flush_interval_s", path, float, dh.flush_interval_s, _non_negative),
        timeout_s=c.get(d, "timeout_s", path, float, dh.timeout_s, _positive),
        headers=dict(headers),
        retry_initial_s=initial,
        retry_max_s=most,
    )  # fmt: skip


def _taps(c: _Checker, node: Any, routes_raw: Any, store: StoreConfig) -> tuple[TapConfig, ...]:
    if node is None:
        return ()
    if not isinstance(node, list):
        c.err("taps", "must be a list of taps")
        return ()
    taps: list[TapConfig] = []
    for i, tnode in enumerate(node):
        p = f"taps[{i}]"
        t = c.mapping(tnode, p, _TAP_KEYS, {"name"})
        name = c.get(
            t, "name", p, str, "", lambda v: None if re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", v) else
            "letters, digits, _ . - only (1..64)",
        )  # fmt: skip
        if name and name in (x.name for x in taps):
            c.err(f"{p}.name", f"duplicate tap name {name!r}")
        actions = _names(c, t, "actions", p)
        directions = _names(c, t, "directions", p, TAP_DIRECTIONS) or TAP_DIRECTIONS
        types = _names(c, t, "message_types", p, TAP_MESSAGE_TYPES) or TAP_MESSAGE_TYPES
        origins: set[str] | None = None
        for j, entry in enumerate(_names(c, t, "routes", p) or ()):
            origin = _route_origin(entry, routes_raw)
            if origin is None:
                c.err(f"{p}.routes[{j}]", f"no route {entry!r}: use config:routes[i], override, or a route's match")
            origins = (origins or set()) | ({origin} if origin else set())
        if sum(t.get(k) is not None for k in ("redis_stream", "http")) != 1:
            c.err(p, "needs exactly one sink: redis_stream or http")
        rs: TapRedisStreamConfig | None = None
        if t.get("redis_stream") is not None:
            q = f"{p}.redis_stream"
            r = c.mapping(t["redis_stream"], q, {"key", "max_len"}, {"key"})
            if store.url.startswith("memory:"):
                c.err(q, "needs a Redis store (store.url): the stream is written with the store's client")
            key = c.get(r, "key", q, str, "", lambda v: None if v else "must not be empty")
            if key.startswith(f"{store.prefix}:tap:"):
                c.err(f"{q}.key", f"is inside the tap outboxes' namespace ({store.prefix}:tap:)")
            rs = TapRedisStreamConfig(key=key, max_len=c.get(r, "max_len", q, int, 100_000, _positive))
        http = _tap_http(c, t["http"], f"{p}.http") if t.get("http") is not None else None
        ob = c.mapping(t.get("outbox"), f"{p}.outbox", {"max_len", "max_age_s"})
        taps.append(
            TapConfig(
                name=name,
                redis_stream=rs,
                http=http,
                actions=frozenset(actions) if actions is not None else None,
                directions=frozenset(directions),
                message_types=frozenset(types),
                routes=frozenset(origins) if origins is not None else None,
                outbox_max_len=c.get(ob, "max_len", f"{p}.outbox", int, 100_000, _positive),
                outbox_max_age_s=c.get(ob, "max_age_s", f"{p}.outbox", float, 7 * 86400.0, _positive),
            )
        )
    return tuple(taps)


#: the handshake's own deadline is 10 s (gateway/edge/handshake.py HANDSHAKE_TIMEOUT_S): a paced charger's wait must
#: leave time for the upstream connect
_MAX_CONNECT_WAIT_S = 8.0


def _pacing(c: _Checker, b: Mapping[str, Any], path: str) -> tuple[float | None, float]:
    """``backends.<name>.max_connects_per_s`` (None: no pacing) and ``max_connect_wait_s`` (gateway/links/pacing.py)."""
    rate = c.get(b, "max_connects_per_s", path, float, 0.0, _positive)
    wait = c.get(
        b, "max_connect_wait_s", path, float, 5.0,
        lambda v: None if 0 <= v <= _MAX_CONNECT_WAIT_S else f"must be 0..{_MAX_CONNECT_WAIT_S:g} (the handshake "
        "has 10 s in all)",
    )  # fmt: skip
    return rate or None, wait


def _verification_cache(c: _Checker, node: Any, path: str) -> VerificationCacheConfig | None:
    if node is None:
        return None
    d = c.mapping(node, path, {"secret", "ttl_s"}, {"secret"})
    secret = c.get(
        d, "secret", path, str, "",
        lambda v: None if len(v) >= 32 else "must be at least 32 characters (e.g. `openssl rand -hex 32`)",
    )  # fmt: skip
    ttl = c.get(d, "ttl_s", path, float, VerificationCacheConfig().ttl_s, _positive)
    return VerificationCacheConfig(secret=secret, ttl_s=ttl) if secret else None


def _tls_version(c: _Checker, d: Mapping[str, Any], path: str) -> TlsVersion:
    """``min_version`` of a TLS block ("1.2" | "1.3"; YAML may write it as a number)."""
    raw = {**d, "min_version": str(d.get("min_version", "1.2"))}
    return cast(TlsVersion, c.get(raw, "min_version", path, str, "1.2", _one_of("1.2", "1.3")))


def parse_config(raw: Any, env: Mapping[str, str] | None = None) -> Config:
    """Validate a parsed YAML document; raise :class:`ConfigError` with every problem."""
    c = _Checker(os.environ if env is None else env)
    raw = c.expand(raw, "")
    top = c.mapping(
        raw,
        "",
        {"listen", "admin", "store", "backends", "routes", "logging", "session", "security", "workers", "taps"}
        | {"quirks", "compliance", "sites"},
        {"backends", "routes"},
    )

    lraw = top.get("listen")
    if isinstance(lraw, list):
        if not lraw:
            c.err("listen", "must be a mapping or a non-empty list of mappings")
        listeners = [_listener(c, node, f"listen[{i}]", i) for i, node in enumerate(lraw)]
    else:
        listeners = [_listener(c, lraw, "listen", 0)]
    listeners = listeners or [ListenConfig()]
    names = [lst.name for lst in listeners]
    for i, n in enumerate(names):
        if n in names[:i]:
            c.err(f"listen[{i}].name", f"duplicate listener name {n!r}")
    listen = listeners[0]

    d = c.mapping(top.get("admin"), "admin", {"host", "port", "token", "tls"})
    da = AdminConfig()
    token = c.get(d, "token", "admin", str, "") or None
    admin = AdminConfig(
        host=c.get(d, "host", "admin", str, da.host),
        port=c.get(d, "port", "admin", int, da.port, _port),
        token=token,
        tls=_server_tls(c, d.get("tls"), "admin.tls", mtls=False),
    )
    if token is None and not _is_loopback(admin.host):
        c.err("admin.token", f"is required when the admin listener binds to a non-loopback address ({admin.host})")

    d = c.mapping(top.get("store"), "store", {"url", "prefix", "write_queue_max", "owner_ttl_s"})
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
        owner_ttl_s=c.get(
            d, "owner_ttl_s", "store", float, ds.owner_ttl_s, lambda v: None if v >= 0.3 else "must be >= 0.3"
        ),
    )
    workers = c.get(top, "workers", "", int, 1, lambda v: None if 1 <= v <= 256 else "must be 1..256")
    if workers > 1 and store.url.startswith("memory:"):
        c.err("workers", f"workers: {workers} needs a Redis store (store.url): processes cannot share memory://")

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
                node,
                p,
                {
                    "url",
                    "ocpp",
                    "connect_timeout_s",
                    "reconnect_grace_s",
                    "ping_interval_s",
                    "security_profile",
                    "tls",
                    "auth",
                    "translation",
                    "max_connects_per_s",
                    "max_connect_wait_s",
                    "replay_per_s",
                },
                {"url"},
            )
            db = BackendConfig(name=name, url="")
            ocpp_v = b.get("ocpp", db.ocpp)
            if _ambiguous_version(c, ocpp_v, f"{p}.ocpp"):
                ocpp_v = db.ocpp
            url = c.get(b, "url", p, str, "", _ws_url).rstrip("/")
            profile = c.get(b, "security_profile", p, int, 0, _profile)
            tls = _backend_tls(c, b.get("tls"), f"{p}.tls")
            auth = _backend_auth(c, b.get("auth"), f"{p}.auth")
            pacing = _pacing(c, b, p)
            if profile >= 2 and url and not url.startswith("wss://"):
                c.err(f"{p}.url", f"security profile {profile} needs a wss:// URL")
            if profile == 3 and not (tls.cert or tls.cert_dir):
                c.err(f"{p}.tls", "security profile 3 needs a client certificate: cert and key, or cert_dir")
            if "auth" in b and profile not in (1, 2):
                c.err(f"{p}.auth", "Basic auth is sent with security_profile 1 or 2 only")
            backends[name] = BackendConfig(
                name=name,
                url=url,
                security_profile=profile,
                tls=tls,
                auth=auth,
                ocpp=parse_version(c.get({"ocpp": str(ocpp_v)}, "ocpp", p, str, db.ocpp, _one_of(*SUBPROTOCOLS))),
                connect_timeout_s=c.get(b, "connect_timeout_s", p, float, db.connect_timeout_s, _positive),
                reconnect_grace_s=c.get(b, "reconnect_grace_s", p, float, db.reconnect_grace_s, _non_negative),
                ping_interval_s=c.get(b, "ping_interval_s", p, float, db.ping_interval_s, _non_negative),
                translation=_translation(c, b.get("translation"), f"{p}.translation"),
                max_connects_per_s=pacing[0],
                max_connect_wait_s=pacing[1],
                replay_per_s=c.get(b, "replay_per_s", p, float, db.replay_per_s, _positive),
            )

    routes: list[RouteConfig] = []
    rraw = top.get("routes")
    if "routes" in top and (not isinstance(rraw, list) or not rraw):
        c.err("routes", "must be a non-empty list of {match, primary}")
    elif isinstance(rraw, list):
        for i, node in enumerate(rraw):
            p = f"routes[{i}]"
            r = c.mapping(
                node,
                p,
                {"match", "primary", "security_profile", "allowlist", "mirrors", "mirror_calls", "outbox", "offline"},
                {"match", "primary"},
            )
            match = c.get(r, "match", p, str, "")
            primary = c.get(r, "primary", p, str, "")
            if "primary" in r and isinstance(r["primary"], str) and isinstance(braw, dict) and primary not in braw:
                c.err(f"{p}.primary", f"unknown backend {primary!r} (defined: {', '.join(map(str, braw))})")
            rprofile: int | None = None
            if r.get("security_profile") is not None:
                rprofile = c.get(r, "security_profile", p, int, 0, _profile)
            allow: frozenset[str] | None = None
            araw = r.get("allowlist")
            if araw is not None:
                if not isinstance(araw, list) or not all(isinstance(x, str) and x for x in araw):
                    c.err(f"{p}.allowlist", "must be a list of charger ids")
                else:
                    allow = frozenset(araw)
            mirrors: list[str] = []
            mraw = r.get("mirrors", [])
            if not isinstance(mraw, list):
                c.err(f"{p}.mirrors", "must be a list of backend names")
            else:
                for j, name in enumerate(mraw):
                    if not isinstance(name, str) or not isinstance(braw, dict) or name not in braw:
                        c.err(f"{p}.mirrors[{j}]", f"unknown backend {name!r}")
                    elif name == primary:
                        c.err(f"{p}.mirrors[{j}]", "the primary cannot also be a mirror")
                    else:
                        mirrors.append(name)
            calls_allow: frozenset[str] | None = None
            mc = r.get("mirror_calls", "deny")
            if isinstance(mc, dict) and set(mc) == {"allow"} and isinstance(mc["allow"], list):
                calls_allow = frozenset(str(a) for a in mc["allow"])
            elif mc != "deny":
                c.err(f"{p}.mirror_calls", "must be 'deny' or {allow: [actions]}")
            ob = c.mapping(r.get("outbox"), f"{p}.outbox", {"max_len", "max_age_s"})
            ob_len = c.get(ob, "max_len", f"{p}.outbox", int, 10_000, _positive)
            ob_age = c.get(ob, "max_age_s", f"{p}.outbox", float, 7 * 86400.0, _positive)
            offline = parse_offline(c, r.get("offline"), f"{p}.offline")
            if match and primary:
                routes.append(
                    RouteConfig(
                        match=match,
                        primary=primary,
                        security_profile=rprofile,
                        allowlist=allow,
                        mirrors=tuple(mirrors),
                        mirror_calls_allow=calls_allow,
                        outbox_max_len=ob_len,
                        outbox_max_age_s=ob_age,
                        offline=offline,
                    )
                )

    d = c.mapping(top.get("logging"), "logging", {"level", "format"})
    dlog = LoggingConfig()
    logging = LoggingConfig(
        level=cast(
            LogLevel, c.get(d, "level", "logging", str, dlog.level, _one_of("debug", "info", "warning", "error"))
        ),
        format=cast(LogFormat, c.get(d, "format", "logging", str, dlog.format, _one_of("json", "console"))),
    )

    d = c.mapping(
        top.get("session"),
        "session",
        {"call_timeout_s", "max_queued_calls", "shutdown_grace_s", "drain_window_s", "validate_schemas"},
    )
    dse = SessionConfig()
    session = SessionConfig(
        call_timeout_s=c.get(d, "call_timeout_s", "session", float, dse.call_timeout_s, _positive),
        max_queued_calls=c.get(d, "max_queued_calls", "session", int, dse.max_queued_calls, _non_negative),
        shutdown_grace_s=c.get(d, "shutdown_grace_s", "session", float, dse.shutdown_grace_s, _non_negative),
        drain_window_s=c.get(d, "drain_window_s", "session", float, dse.drain_window_s, _non_negative),
        validate_schemas=c.get(d, "validate_schemas", "session", bool, dse.validate_schemas),
    )

    d = c.mapping(
        top.get("security"),
        "security",
        {
            "credentials_file",
            "auth_failures_per_charger",
            "auth_failures_per_address",
            "auth_failure_window_s",
            "hash_concurrency",
            "verification_cache",
        },
    )
    dsec = SecurityConfig()
    security = SecurityConfig(
        credentials_file=c.get(d, "credentials_file", "security", str, "") or None,
        auth_failures_per_charger=c.get(
            d, "auth_failures_per_charger", "security", int, dsec.auth_failures_per_charger, _positive
        ),
        auth_failures_per_address=c.get(
            d, "auth_failures_per_address", "security", int, dsec.auth_failures_per_address, _positive
        ),
        auth_failure_window_s=c.get(
            d, "auth_failure_window_s", "security", float, dsec.auth_failure_window_s, _positive
        ),
        hash_concurrency=c.get(d, "hash_concurrency", "security", int, dsec.hash_concurrency, _positive),
        verification_cache=_verification_cache(c, d.get("verification_cache"), "security.verification_cache"),
    )

    taps = _taps(c, top.get("taps"), top.get("routes"), store)
    quirks, problems = parse_quirks(top.get("quirks"))
    compliance, more = parse_compliance(top.get("compliance"))
    for where, msg in problems + more:
        c.err(where, msg)
    sites = parse_sites(c, top.get("sites"))

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
        listeners=tuple(listeners),
        security=security,
        workers=workers,
        taps=taps,
        quirks=quirks,
        compliance=compliance,
        sites=sites,
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
