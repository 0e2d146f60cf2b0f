"""Charger admission by security profile: listener TLS contexts, Basic auth and mTLS identity, failure limits.

:class:`EdgeSecurity` is built once at start from the config (listener TLS contexts, the password verifier, the
failure limiters) and held by the hub. Admission (:mod:`gateway.app.admission`) calls :meth:`EdgeSecurity.admit`
for every handshake, after the route is known and before the upstream link opens:

1. a client certificate whose CN is the charger id satisfies every profile (mTLS is the strongest);
2. profile 3 without one: 403 (``no_client_cert`` on TLS, ``weaker_profile`` on plain ws; ``cert_cn_mismatch``);
3. profile 2 on plain ws: 403 ``weaker_profile``, before the password is looked at;
4. profiles 1/2: a charger id or remote address over its failure budget gets 429 (``rate_limited``) before any
   hashing; no/malformed ``Authorization``, username != charger id, or a wrong password: 401 with
   ``WWW-Authenticate: Basic realm="ocpp"``, counted against both budgets; store unreadable: 503;
5. a route's allowlist is checked last, so that a refusal does not tell which ids exist.

No password is logged, put in an exception or a metric label; refusal reasons are fixed strings. The backend side
(client certificates, upstream passwords) is :mod:`gateway.links.credentials`.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from dataclasses import dataclass
from typing import Any

from gateway.config import Config, ConfigError, ListenConfig
from gateway.errors import ChargerRejected
from gateway.logging import get_logger
from gateway.metrics import Metrics
from gateway.security import (
    FailureLimiter,
    PasswordVerifier,
    SecurityProfile,
    observe_handshake_failures,
    parse_basic_auth,
    peer_common_name,
    server_context,
    tls_failure,
)
from gateway.store import Store, StoreUnavailable

__all__ = ["Admission", "EdgeSecurity"]

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


class EdgeSecurity:
    """Charger-side security state of one gateway process (no module globals). Raises ConfigError on TLS files it
    cannot load."""

    def __init__(self, config: Config, store: Store, metrics: Metrics) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.log = get_logger(component="security")
        s = config.security
        cache = s.verification_cache
        self.verifier = PasswordVerifier(
            store, concurrency=s.hash_concurrency, secret=cache.secret if cache is not None else None,
            ttl_s=cache.ttl_s if cache is not None else 0.0, on_cache=self._cache_result,
            store_errors=(StoreUnavailable,),
        )  # fmt: skip
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
                observe_handshake_failures(ctx, functools.partial(self.tls_failed, lst.name))
        if problems:
            raise ConfigError(problems)

    def _cache_result(self, result: str) -> None:
        self.metrics.auth_cache.labels(result).inc()

    def tls_failed(self, listener: str, e: BaseException) -> None:
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
