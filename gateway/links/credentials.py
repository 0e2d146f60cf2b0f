"""What the gateway presents to each backend for a charger (security profiles toward the CSMS): the client TLS
context (CA to verify the CSMS, client certificate: one for all chargers or one per charger from ``tls.cert_dir``)
and the Basic auth password (a stored one wins, else ``auth.password_from``). Built once at start from the config
(raises ConfigError on unreadable files); the link factory asks it for every link it opens. No secret is logged.
"""

from __future__ import annotations

import ssl
from collections import OrderedDict
from pathlib import Path

from gateway.config import BackendConfig, Config, ConfigError
from gateway.security import client_context
from gateway.store import Store, Write

__all__ = ["UpstreamCredentials"]


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


class UpstreamCredentials:
    """Client TLS contexts and upstream passwords for every backend of the config."""

    def __init__(self, config: Config, store: Store) -> None:
        self.store = store
        problems: list[tuple[str, str]] = []
        self.backend_tls: dict[str, _ClientContexts] = {}
        for name, b in config.backends.items():
            try:
                self.backend_tls[name] = _ClientContexts(b)
            except (OSError, ssl.SSLError) as e:
                problems.append((f"backends.{name}.tls", f"cannot set up TLS: {e}"))
        if problems:
            raise ConfigError(problems)

    async def password(self, backend: BackendConfig, cid: str, presented: str | None) -> str | None:
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

    async def store_password(self, cid: str, backend: str, password: str) -> None:
        """Persist the password presented to ``backend`` for ``cid`` (rotation). Raises ``StoreUnavailable``."""
        await self.store.apply([Write("upcred", cid, backend, {"password": password})])
