"""Security profiles (OCPP 1.6 security whitepaper, OCPP 2.0.1 Part 2 §A): TLS contexts, Basic auth, mTLS identity.

Profiles, as the edge and the upstream links apply them:

====  ===========================  ==========================================================================
 0    none                         plain ws, no credentials (legacy, internal networks only)
 1    Basic auth over ws           ``Authorization: Basic`` with username = charger id, password from the store
 2    TLS + Basic auth             as 1, over wss (server certificate only)
 3    mutual TLS                   wss with a client certificate that chains to ``client_ca`` and whose subject
                                   CN equals the charger id (2.0.1 A00.FR.417; 1.6 whitepaper §3.4: the
                                   "serial number" of the charge point is in the CN)
====  ===========================  ==========================================================================

What a connection *achieved* is computed from what it presented (:func:`achieved_profile`); a charger whose achieved
profile is lower than its route requires is refused (403).

Everything here is pure or a small stateful helper with bounded memory (the rate limiter, the verification cache);
the charger edge (``gateway/edge/auth.py``) and the link credentials (``gateway/links/credentials.py``) call it.
Passwords are hashed with scrypt (stdlib ``hashlib.scrypt``, salted, memory-hard) and compared with
``hmac.compare_digest``. Hashing runs in the default executor (it releases the GIL) under a semaphore, so a
reconnect storm cannot stall the event loop. No function here logs; none returns a secret in an error message.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import enum
import hashlib
import hmac
import os
import secrets
import ssl
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "OCPP_TLS12_CIPHERS",
    "BasicCredentials",
    "FailureLimiter",
    "PasswordVerifier",
    "SecurityProfile",
    "achieved_profile",
    "client_context",
    "hash_password",
    "observe_handshake_failures",
    "password_proof",
    "parse_basic_auth",
    "peer_common_name",
    "server_context",
    "tls_failure",
    "valid_password",
    "verify_password",
]


class SecurityProfile(enum.IntEnum):
    NONE = 0
    BASIC = 1
    TLS_BASIC = 2
    MUTUAL_TLS = 3


# ---------------------------------------------------------------------------------------------------------------
# TLS

#: TLS 1.2 suites required by OCPP 2.0.1 Part 2 A00.FR.318/.319 and the 1.6 security whitepaper §3.1 (ECDHE first;
#: the static-RSA GCM suites are on the required list "for backwards compatibility" with RSA certificates). TLS 1.3
#: suites are OpenSSL's defaults (all AEAD). Override with ``tls.ciphers``.
OCPP_TLS12_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
    ]
)

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def _harden(ctx: ssl.SSLContext, min_version: str, ciphers: str | None) -> None:
    ctx.minimum_version = _VERSIONS[min_version]
    ctx.set_ciphers(ciphers or OCPP_TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE


def server_context(
    cert: str,
    key: str,
    *,
    client_ca: str | None = None,
    require_client_cert: bool = False,
    crl: str | None = None,
    min_version: str = "1.2",
    ciphers: str | None = None,
) -> ssl.SSLContext:
    """A listener's context: TLS >= ``min_version``, OCPP suites, ``cert`` served as a whole chain (leaf first).

    With ``client_ca`` a client certificate is requested and, when presented, must chain to it and be valid now
    (OpenSSL checks the dates); ``require_client_cert`` makes it mandatory in the handshake (profile-3 listener).
    ``crl`` adds a CRL (PEM) checked for the leaf. Raises ``OSError``/``ssl.SSLError`` on unreadable or mismatched
    files.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(ctx, min_version, ciphers)
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.load_verify_locations(cafile=client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
        if crl:
            ctx.load_verify_locations(cafile=crl)
            ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return ctx


def client_context(
    *,
    ca: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    verify: bool = True,
    min_version: str = "1.2",
    ciphers: str | None = None,
) -> ssl.SSLContext:
    """An upstream link's context: the backend's certificate is verified (``ca`` or the system store) and its
    host name checked unless ``verify`` is False; ``cert``/``key`` is the client certificate for profile 3."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _harden(ctx, min_version, ciphers)
    if verify:
        if ca:
            ctx.load_verify_locations(cafile=ca)
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


class HandshakeAbandoned(ConnectionError):
    """The client closed its connection while it waited for its TLS handshake's turn: no handshake was made."""


def tls_failure(e: BaseException) -> str:
    """The bounded ``outcome`` label of a failed TLS handshake."""
    if isinstance(e, TimeoutError):
        return "timeout"
    if isinstance(e, HandshakeAbandoned):
        return "abandoned"
    if isinstance(e, ssl.SSLCertVerificationError):
        return {10: "expired_cert", 23: "revoked_cert"}.get(e.verify_code, "untrusted_cert")
    if isinstance(e, ssl.SSLError):
        r = (e.reason or "").upper()
        if "PROTOCOL" in r or "VERSION" in r:
            return "protocol_version"
        if "PEER_DID_NOT_RETURN_A_CERTIFICATE" in r or "CERTIFICATE_REQUIRED" in r:
            return "no_client_cert"
        if "EXPIRED" in r:
            return "expired_cert"
        if "REVOKED" in r:
            return "revoked_cert"
        if "CERTIFICATE" in r or "UNKNOWN_CA" in r:
            return "untrusted_cert"
        if "CIPHER" in r:
            return "no_shared_cipher"
    return "error"


def observe_handshake_failures(ctx: ssl.SSLContext, on_failure: Callable[[BaseException], None]) -> None:
    """Call ``on_failure`` with the error of every TLS handshake that fails on ``ctx`` (server side).

    The loop (asyncio's or uvloop's) does the handshake before the protocol exists and only logs a failure at debug
    level; both drive it through ``ctx.wrap_bio`` and so through ``ctx.sslobject_class``, which is where we look.
    """

    class _Observed(ssl.SSLObject):
        def do_handshake(self) -> None:
            try:
                super().do_handshake()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                raise
            except ssl.SSLError as e:
                on_failure(e)
                raise

    ctx.sslobject_class = _Observed


def peer_common_name(ssl_object: Any) -> str | None:
    """The subject CN of the *verified* client certificate of a TLS connection, or None (no certificate).

    ``getpeercert()`` returns an empty dict unless the certificate was presented and verified, so a CN here always
    comes from a certificate that chains to the listener's ``client_ca``. A subject with several CNs yields None
    (ambiguous identity is no identity).
    """
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if not cert:
        return None
    cns = [value for rdn in cert.get("subject", ()) for (name, value) in rdn if name == "commonName"]
    return cns[0] if len(cns) == 1 else None


# ---------------------------------------------------------------------------------------------------------------
# Basic auth


@dataclass(frozen=True, slots=True)
class BasicCredentials:
    username: str
    password: str

    def __repr__(self) -> str:
        return f"BasicCredentials(username={self.username!r}, password=***)"


def parse_basic_auth(header: str | None) -> BasicCredentials | None:
    """``Authorization: Basic base64(user:password)`` (RFC 7617), or None when absent or malformed."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = text.partition(":")
    if not sep:
        return None
    return BasicCredentials(user, password)


def basic_auth_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def valid_password(password: str) -> str | None:
    """None when ``password`` is acceptable as a charger's Basic auth password, else why not.

    OCPP 2.0.1 ``BasicAuthPassword`` is a passwordString of 16..40 characters; 1.6 ``AuthorizationKey`` is 16..20
    bytes written as up to 40 hex digits. Both fit 16..40 printable ASCII characters.
    """
    if not 16 <= len(password) <= 40:
        return "must be 16..40 characters"
    if not (password.isascii() and password.isprintable()):
        return "must be printable ASCII"
    return None


# scrypt with the interactive-login parameters of RFC 7914 §2 (N=2^14, r=8, p=1: 16 MiB, ~50 ms).
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _DKLEN, _SALT = 1 << 14, 8, 1, 32, 16


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def hash_password(password: str, *, n: int = _SCRYPT_N, r: int = _SCRYPT_R, p: int = _SCRYPT_P) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64), a fresh random salt each time. CPU-heavy: run it in an executor."""
    salt = os.urandom(_SALT)
    dk = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=_DKLEN, maxmem=128 * r * n * p + 2**20)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(dk)}"


def is_password_hash(text: str) -> bool:
    parts = text.split("$")
    return len(parts) == 6 and parts[0] == "scrypt" and all(x.isdigit() for x in parts[1:4])


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches the ``hash_password`` output ``encoded`` (constant-time comparison)."""
    try:
        scheme, n_s, r_s, p_s, salt_s, dk_s = encoded.split("$")
        n, r, p = int(n_s), int(r_s), int(p_s)
        salt, want = base64.b64decode(salt_s, validate=True), base64.b64decode(dk_s, validate=True)
        if scheme != "scrypt" or not (2 <= n <= 1 << 20 and 1 <= r <= 32 and 1 <= p <= 16):
            return False
        if len(want) != _DKLEN or len(salt) < _SALT:  # a truncated hash must not verify a prefix
            return False
        got = hashlib.scrypt(
            password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(want), maxmem=128 * r * n * p + 2**20
        )
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(got, want)


class HashSource(Protocol):
    """Where the verifier reads hashes and keeps proofs (the store)."""

    async def get_password_hash(self, cid: str) -> str | None: ...

    async def get_password_hash_and_proof(self, cid: str, proof_ttl_s: float) -> tuple[str | None, bytes | None]: ...

    async def put_password_proof(self, cid: str, proof: bytes, ttl_s: float) -> None: ...


def password_proof(key: bytes, cid: str, stored_hash: str, password: str) -> bytes:
    """HMAC-SHA256(key, charger id, stored hash, password), each part length-prefixed (no two triples share an
    input). It proves that ``password`` matched ``stored_hash`` for ``cid``, and is worthless without ``key``: it
    holds neither the password nor the hash, and a guess cannot be tested against it without the key."""
    mac = hmac.new(key, b"ocppgw-credproof-v1", hashlib.sha256)
    for part in (cid.encode(), stored_hash.encode(), password.encode()):
        mac.update(len(part).to_bytes(4, "big"))
        mac.update(part)
    return mac.digest()


class PasswordVerifier:
    """Checks a charger's password against the hash in the store.

    * scrypt runs in the default executor, at most ``concurrency`` at once, so the loop keeps serving frames;
    * an id without a stored hash is checked against a dummy hash, so timing does not tell which ids exist;
    * a successful check is remembered as a proof, :func:`password_proof` of (charger id, stored hash, password),
      so that a fleet reconnecting pays scrypt once per charger, not once per connection. A new hash in the store
      (rotation, admin API) makes the proof miss; so does any other password, which then costs a real scrypt. The
      comparison is constant-time. With ``secret`` (``security.verification_cache``) proofs are kept in the store
      (one round trip reads hash and proof), shared by every process and replica and kept across restarts, for
      ``ttl_s`` after the last check that read them; without it, in a bounded LRU of this process under a random
      key, lost at a restart;
    * the same check running twice at once (a charger that retried while its first attempt still waited for a hash,
      as in a reconnect storm when hashing is behind) runs one scrypt: the second waits for the first's result;
    * ``on_cache`` is told ``hit`` (no scrypt), ``joined`` (the result of the same check already running) or
      ``miss`` (a scrypt ran: no proof, a stale one, a wrong password, an unknown id) for every check;
      ``store_errors``: what the store raises when it cannot keep a proof now (the check's result stands, the proof
      is not kept).
    """

    def __init__(
        self,
        store: HashSource,
        concurrency: int = 4,
        cache_size: int = 100_000,
        *,
        secret: str | None = None,
        ttl_s: float = 30 * 86400.0,
        on_cache: Callable[[str], None] | None = None,
        store_errors: tuple[type[Exception], ...] = (),
    ) -> None:
        self.store = store
        self._sem = asyncio.Semaphore(concurrency)
        self._shared = secret is not None
        self._key = secret.encode() if secret is not None else secrets.token_bytes(32)
        self._ttl_s = ttl_s
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_size = cache_size
        self._dummy: str | None = None
        self._on_cache = on_cache
        self._store_errors = store_errors
        #: checks running now, by proof: a charger retrying while its first check still runs waits for that one
        self._running: dict[bytes, asyncio.Task[bool]] = {}

    async def verify(self, cid: str, password: str) -> bool:
        """Raises whatever the store raises when it cannot be read (``StoreUnavailable``)."""
        if self._shared:
            stored, proof = await self.store.get_password_hash_and_proof(cid, self._ttl_s)
        else:
            stored = await self.store.get_password_hash(cid)
            proof = self._cache.get(cid)
        tag = password_proof(self._key, cid, stored, password) if stored is not None else None
        if tag is not None and proof is not None and hmac.compare_digest(proof, tag):
            if not self._shared:
                self._cache.move_to_end(cid)
            self._count("hit")
            return True
        loop = asyncio.get_running_loop()
        if stored is None or tag is None:  # unknown id: the dummy hash, every time
            self._count("miss")
            async with self._sem:
                if self._dummy is None:
                    self._dummy = await loop.run_in_executor(None, hash_password, secrets.token_hex(16))
                await loop.run_in_executor(None, verify_password, password, self._dummy)
            return False
        check = self._running.get(tag)
        if check is not None:  # the same charger, hash and password already being checked (a retry): its result
            self._count("joined")
            return await asyncio.shield(check)
        self._count("miss")
        check = self._running[tag] = loop.create_task(self._check(cid, password, stored, tag), name="password-check")
        check.add_done_callback(lambda _: self._running.pop(tag, None))
        return await asyncio.shield(check)

    async def _check(self, cid: str, password: str, stored: str, tag: bytes) -> bool:
        """One scrypt, and the proof remembered when it matched. A task of its own, so that a charger that gives up
        (its handshake deadline) neither cancels it for the retries waiting on it nor wastes the work: bounded by
        one hash and one store write, it finishes on its own."""
        loop = asyncio.get_running_loop()
        async with self._sem:
            ok = await loop.run_in_executor(None, verify_password, password, stored)
        if ok:
            await self._remember(cid, tag)
        return ok

    def _count(self, result: str) -> None:
        if self._on_cache is not None:
            self._on_cache(result)

    async def _remember(self, cid: str, tag: bytes) -> None:
        if not self._shared:
            self._cache[cid] = tag
            self._cache.move_to_end(cid)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return
        # Not remembered when the store fails now: the charger is admitted all the same (its password matched), and
        # its next check runs scrypt again.
        with contextlib.suppress(*self._store_errors):
            await self.store.put_password_proof(cid, tag, self._ttl_s)


# ---------------------------------------------------------------------------------------------------------------
# rate limiting


class FailureLimiter:
    """At most ``limit`` failures per key in a fixed window of ``window_s``; at the limit, the key is blocked until
    its window ends. Memory is bounded: beyond ``max_keys`` the least recently touched key is forgotten."""

    def __init__(self, limit: int, window_s: float, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._hits: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def blocked(self, key: str, now: float) -> bool:
        entry = self._hits.get(key)
        if entry is None:
            return False
        start, count = entry
        if now - start >= self.window_s:
            del self._hits[key]
            return False
        return count >= self.limit

    def fail(self, key: str, now: float) -> None:
        entry = self._hits.pop(key, None)
        if entry is None or now - entry[0] >= self.window_s:
            entry = (now, 0)
        self._hits[key] = (entry[0], entry[1] + 1)
        while len(self._hits) > self.max_keys:
            self._hits.popitem(last=False)

    def __len__(self) -> int:
        return len(self._hits)


# ---------------------------------------------------------------------------------------------------------------
# admission


def achieved_profile(tls: bool, basic_ok: bool, cert_cn_matches: bool) -> SecurityProfile:
    """The strongest profile a connection satisfies with what it presented (and what was verified)."""
    if tls and cert_cn_matches:
        return SecurityProfile.MUTUAL_TLS
    if basic_ok:
        return SecurityProfile.TLS_BASIC if tls else SecurityProfile.BASIC
    return SecurityProfile.NONE
