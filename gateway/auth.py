"""Admission by security profile, upstream credentials and TLS contexts, the credential store's writers.

:class:`EdgeSecurity` is built once at start from the config (listener and backend TLS contexts, the password
verifier, the failure limiters) and held by the :class:`~gateway.server.Gateway`. The edge calls
:meth:`EdgeSecurity.admit` for every handshake, after the route is known and before the upstream link opens:

1. a client certificate whose CN is the charger id satisfies every profile (mTLS is the strongest);
2. profile 3 without one: 403 (``no_client_cert`` on TLS, ``weaker_profile`` on plain ws; ``cert_cn_mismatch``);
3. profile 2 on plain ws: 403 ``weaker_profile``, before the password is looked at;
4. profiles 1/2: a charger id or remote address over its failure budget gets 429 (``rate_limited``) before any
   hashing; no/malformed ``Authorization``, username != charger id, or a wrong password: 401 with
   ``WWW-Authenticate: Basic realm="ocpp"``, counted against both budgets; store unreadable: 503;
5. a route's allowlist is checked last, so that a refusal does not tell which ids exist.

No password is logged, put in an exception or a metric label; refusal reasons are fixed strings.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway.config import BackendConfig, Config, ConfigError, ListenConfig
from gateway.errors import ChargerRejected
from gateway.logging import get_logger
from gateway.metrics import Metrics
from gateway.security import (
    FailureLimiter,
    PasswordVerifier,
    SecurityProfile,
    client_context,
    hash_password,
    is_password_hash,
    observe_handshake_failures,
    parse_basic_auth,
    peer_common_name,
    server_context,
    tls_failure,
    valid_password,
)
from gateway.store import Store, StoreUnavailable, Write

__all__ = [
    "Admission",
    "CredentialsFileError",
    "EdgeSecurity",
    "import_credentials",
    "load_credentials_file",
    "set_charger_password",
]

_BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="ocpp", charset="UTF-8"'}


class Unauthorized(ChargerRejected):
    """401 with a Basic challenge; ``auth_reason`` is the bounded metric label."""

    def __init__(self, auth_reason: str, reason: str) -> None:
        super().__init__(401, "unauthorized", reason, _BASIC_CHALLENGE)
        self.auth_reason = auth_reason


class Forbidden(ChargerRejected):
    def __init__(self, auth_reason: str, reason: str) -> None:
        super().__init__(403, "forbidden", reason)
        self.auth_reason = auth_reason


@dataclass(frozen=True, slots=True)
class Admission:
    """What a charger proved. ``password`` is the Basic auth password it presented (verified when the route asked
    for profile 1 or 2), kept in memory for ``password_from: charger`` toward its backend only."""

    profile: SecurityProfile
    password: str | None = None

    def __repr__(self) -> str:
        return f"Admission(profile={self.profile!r}, password={'***' if self.password else None})"


class _ClientContexts:
    """Client TLS contexts toward one backend: one shared, or one per charger from ``cert_dir`` (LRU-bounded)."""

    def __init__(self, backend: BackendConfig, max_cached: int = 1024) -> None:
        self.backend = backend
        t = backend.tls
        self.shared: ssl.SSLContext | None = None
        if not t.cert_dir and (backend.url.startswith("wss://") or t.cert):
            self.shared = client_context(
                ca=t.ca, cert=t.cert, key=t.key, verify=t.verify, min_version=t.min_version, ciphers=t.ciphers
            )
        self._per_charger: OrderedDict[str, ssl.SSLContext] = OrderedDict()
        self._max = max_cached

    def for_charger(self, cid: str) -> ssl.SSLContext | None:
        """Raises ``OSError``/``ssl.SSLError`` when the charger's certificate is missing or broken."""
        t = self.backend.tls
        if not t.cert_dir:
            return self.shared
        ctx = self._per_charger.get(cid)
        if ctx is None:
            d = Path(t.cert_dir)
            if "/" in cid or cid in (".", ".."):
                raise OSError(f"no certificate file name for charger id {cid!r}")
            ctx = client_context(
                ca=t.ca,
                cert=str(d / f"{cid}.pem"),
                key=str(d / f"{cid}.key"),
                verify=t.verify,
                min_version=t.min_version,
                ciphers=t.ciphers,
            )
            self._per_charger[cid] = ctx
            while len(self._per_charger) > self._max:
                self._per_charger.popitem(last=False)
        else:
            self._per_charger.move_to_end(cid)
        return ctx


class EdgeSecurity:
    """Security state of one gateway process (no module globals)."""

    def __init__(self, config: Config, store: Store, metrics: Metrics) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.log = get_logger(component="security")
        s = config.security
        self.verifier = PasswordVerifier(store, concurrency=s.hash_concurrency)
        self.by_charger = FailureLimiter(s.auth_failures_per_charger, s.auth_failure_window_s)
        self.by_address = FailureLimiter(s.auth_failures_per_address, s.auth_failure_window_s)
        problems: list[tuple[str, str]] = []
        self.listener_tls: dict[str, ssl.SSLContext | None] = {}
        for i, lst in enumerate(config.all_listeners()):
            try:
                ctx = self.listener_tls[lst.name] = _listener_context(lst)
            except (OSError, ssl.SSLError) as e:
                problems.append((f"listen[{i}].tls", f"cannot set up TLS: {e}"))
                continue
            if ctx is not None:
                observe_handshake_failures(ctx, functools.partial(self._tls_failed, lst.name))
        self.backend_tls: dict[str, _ClientContexts] = {}
        for name, b in config.backends.items():
            try:
                self.backend_tls[name] = _ClientContexts(b)
            except (OSError, ssl.SSLError) as e:
                problems.append((f"backends.{name}.tls", f"cannot set up TLS: {e}"))
        if problems:
            raise ConfigError(problems)

    def _tls_failed(self, listener: str, e: BaseException) -> None:
        """A TLS handshake failed on a charger listener (called inside the loop's TLS code: must not raise)."""
        outcome = tls_failure(e)
        self.metrics.tls_handshakes.labels(listener, outcome).inc()
        self.log.info("tls_handshake_failed", listener=listener, outcome=outcome, error=getattr(e, "reason", None))

    # ------------------------------------------------------------------ charger side

    async def admit(
        self,
        cid: str,
        authorization: str | None,
        ssl_object: Any,
        required: int,
        allowlist: frozenset[str] | None,
        remote: str,
    ) -> Admission:
        """The charger's :class:`Admission`, or :class:`ChargerRejected` (401/403/429/503), counted by reason."""
        try:
            admission = await self._authenticate(cid, authorization, ssl_object, required, remote)
            if allowlist is not None and cid not in allowlist:
                raise Forbidden("not_allowed", "charger id not on the route's allowlist")
        except (Unauthorized, Forbidden) as e:
            self.metrics.auth_failures.labels(e.auth_reason).inc()
            raise
        return admission

    async def _authenticate(
        self, cid: str, authorization: str | None, ssl_object: Any, required: int, remote: str
    ) -> Admission:
        tls = ssl_object is not None
        cn = peer_common_name(ssl_object)
        if cn is not None and cn == cid:
            return Admission(SecurityProfile.MUTUAL_TLS)
        creds = parse_basic_auth(authorization)
        if required == SecurityProfile.NONE:
            presented = creds.password if creds is not None and creds.username == cid else None
            return Admission(SecurityProfile.NONE, presented)
        if cn is not None:
            raise Forbidden("cert_cn_mismatch", "client certificate subject CN does not match the charger id")
        if required == SecurityProfile.MUTUAL_TLS:
            if tls:
                raise Forbidden("no_client_cert", "security profile 3 requires a client certificate")
            raise Forbidden("weaker_profile", "security profile 3 requires TLS with a client certificate")
        if required == SecurityProfile.TLS_BASIC and not tls:
            raise Forbidden("weaker_profile", "security profile 2 requires TLS")
        now = asyncio.get_running_loop().time()
        if self.by_charger.blocked(cid, now) or (remote and self.by_address.blocked(remote, now)):
            self.metrics.auth_failures.labels("rate_limited").inc()
            retry = {"Retry-After": str(int(self.config.security.auth_failure_window_s))}
            raise ChargerRejected(429, "rate_limited", "too many failed authentication attempts; retry later", retry)
        try:
            if creds is None:
                if authorization:
                    raise Unauthorized("malformed", "malformed Authorization header (Basic expected)")
                raise Unauthorized("missing_credentials", "Basic authentication required")
            if creds.username != cid:
                raise Unauthorized("wrong_username", "Basic auth username must be the charger id")
            try:
                ok = await self.verifier.verify(cid, creds.password)
            except StoreUnavailable:
                raise ChargerRejected(503, "store_unavailable", "credential store unavailable") from None
            if not ok:
                raise Unauthorized("wrong_password", "wrong charger id or password")
        except Unauthorized:
            self.by_charger.fail(cid, now)
            if remote:
                self.by_address.fail(remote, now)
            raise
        return Admission(SecurityProfile.TLS_BASIC if tls else SecurityProfile.BASIC, creds.password)

    # ------------------------------------------------------------------ backend side

    async def upstream_password(self, backend: BackendConfig, cid: str, presented: str | None) -> str | None:
        """The password to present to ``backend`` for ``cid``: a stored one wins, else ``auth.password_from``.

        Raises ``StoreUnavailable``.
        """
        stored = await self.store.get_upstream_password(cid, backend.name)
        if stored is not None:
            return stored
        a = backend.auth
        if a.password_from == "charger":
            return presented
        if a.password_from == "template" and a.password_template is not None:
            return a.password_template.format(charger_id=cid)
        return None

    def client_tls(self, backend: BackendConfig, cid: str) -> ssl.SSLContext | None:
        return self.backend_tls[backend.name].for_charger(cid)

    async def store_upstream_password(self, cid: str, backend: str, password: str) -> None:
        """Persist the password presented to ``backend`` for ``cid`` (rotation). Raises ``StoreUnavailable``."""
        await self.store.apply([Write("upcred", cid, backend, {"password": password})])


def _listener_context(lst: ListenConfig) -> ssl.SSLContext | None:
    t = lst.tls
    if t is None:
        return None
    return server_context(
        t.cert,
        t.key,
        client_ca=t.client_ca,
        require_client_cert=lst.security_profile == SecurityProfile.MUTUAL_TLS,
        crl=t.crl,
        min_version=t.min_version,
        ciphers=t.ciphers,
    )


# ---------------------------------------------------------------------------------------------------------------
# credential store writers


class CredentialsFileError(Exception):
    """The credentials file is unreadable or malformed (the message names the entry, never a password)."""


@dataclass(frozen=True, slots=True)
class _Entry:
    hash: str | None
    password: str | None
    upstream: dict[str, str]


def load_credentials_file(path: str) -> dict[str, _Entry]:
    """Read a credentials file::

    CP-0001: {password: "..."}                # hashed on import
    CP-0002: {hash: "scrypt$16384$8$1$..."}   # `ocpp-gateway hash-password` output
    CP-0003: {password: "...", upstream: {csms-a: "..."}}  # + the password presented to backend csms-a
    """
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
    except OSError as e:
        raise CredentialsFileError(f"cannot read {path}: {e.strerror}") from None
    except yaml.YAMLError:
        raise CredentialsFileError(f"{path} is not valid YAML") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise CredentialsFileError(f"{path}: must be a mapping of charger id to credentials")
    out: dict[str, _Entry] = {}
    for cid, node in raw.items():
        if not isinstance(cid, str) or not isinstance(node, dict) or set(node) - {"password", "hash", "upstream"}:
            raise CredentialsFileError(f"{path}: entry {cid!r} must be a mapping with password, hash or upstream")
        pw, h, up = node.get("password"), node.get("hash"), node.get("upstream") or {}
        if pw is not None and (not isinstance(pw, str) or valid_password(pw)):
            raise CredentialsFileError(f"{path}: {cid}.password {valid_password(str(pw)) or 'must be a string'}")
        if h is not None and (not isinstance(h, str) or not is_password_hash(h)):
            raise CredentialsFileError(f"{path}: {cid}.hash is not an scrypt hash from `ocpp-gateway hash-password`")
        if not isinstance(up, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in up.items()):
            raise CredentialsFileError(f"{path}: {cid}.upstream must map backend names to passwords")
        out[cid] = _Entry(h, pw, dict(up))
    return out


async def import_credentials(store: Store, path: str) -> int:
    """Import a credentials file into the store; return the number of chargers.

    The file is authoritative for the charger-side passwords it lists (it overwrites them at every start). Upstream
    passwords are written only where the store has none, so that one a backend rotated (policy ``terminate``) is
    not reverted by a restart. Raises :class:`CredentialsFileError` or ``StoreUnavailable``.
    """
    entries = load_credentials_file(path)
    loop = asyncio.get_running_loop()
    writes: list[Write] = []
    for cid, e in entries.items():
        h = e.hash if e.password is None else await loop.run_in_executor(None, hash_password, e.password)
        if h is not None:
            writes.append(Write("cred", cid, "", {"hash": h}))
        for backend, pw in e.upstream.items():
            if await store.get_upstream_password(cid, backend) is None:
                writes.append(Write("upcred", cid, backend, {"password": pw}))
    if writes:
        await store.apply(writes)
    return len(entries)


async def set_charger_password(store: Store, cid: str, password: str) -> None:
    """Store the hash of a charger's new Basic auth password (hashing off the loop). Raises ``StoreUnavailable``."""
    h = await asyncio.get_running_loop().run_in_executor(None, hash_password, password)
    await store.apply([Write("cred", cid, "", {"hash": h})])
