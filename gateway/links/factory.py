"""The link factory: the one place an upstream link is opened.

Every link the gateway opens toward a backend — a charger's primary at admission, a mirror feed's link, a cutover's
new primary — comes from :meth:`LinkFactory.open`, from that backend's config: the subprotocol of its OCPP version,
its client TLS context (CA, client certificate: one file or one per charger from ``cert_dir``), its Basic auth
password per ``auth.password_from`` (profiles 1 and 2), its timeouts. A link's reconnects reuse what it was opened
with (:mod:`gateway.links.link`), so nothing else ever builds a connection to a backend.

Admission pacing (``backends.<name>.max_connects_per_s``, :mod:`gateway.links.pacing`) is the factory's too: the
admission awaits :meth:`LinkFactory.pace` for a charger's primary right before it opens the link, so that a reconnect
storm reaches each CSMS at the configured rate. Mirror feeds and cutovers do not take turns: a down mirror is probed
once per back-off for all chargers, and a cutover has its own ``rate_per_s``.

Errors: :class:`~gateway.errors.NoUpstreamCredentials` (no certificate or password for this charger: the charger
gets 502), ``StoreUnavailable`` (the password could not be read: 503), :class:`~gateway.errors.BackendUnavailable`
(refused, failed, timed out: 502/503), :class:`~gateway.errors.BackendBusy` (no turn in time: 503 + Retry-After).
Each names the backend and a reason that holds no secret.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from gateway.config import BackendConfig
from gateway.errors import BackendBusy, NoUpstreamCredentials
from gateway.links.credentials import UpstreamCredentials
from gateway.links.link import Link, open_link
from gateway.links.pacing import ConnectPacer
from gateway.metrics import Metrics
from gateway.ocpp.versions import SUBPROTOCOLS
from gateway.transport import Ticker

__all__ = ["LinkFactory"]


class LinkFactory:
    """Opens links for one gateway process (its credentials, metrics, ticker and frame limit)."""

    def __init__(self, credentials: UpstreamCredentials, metrics: Metrics, ticker: Ticker, max_frame: int) -> None:
        self.credentials = credentials
        self.metrics = metrics
        self.ticker = ticker
        self.max_frame = max_frame
        #: admission pacing per backend name (rebuilt when a reload changes the backend's rate or wait)
        self._pacers: dict[str, ConnectPacer] = {}

    async def pace(self, backend: BackendConfig) -> None:
        """Wait for a turn to open a charger's link toward ``backend`` (no wait when it has no
        ``max_connects_per_s``), or raise :class:`~gateway.errors.BackendBusy` when none comes within
        ``max_connect_wait_s``. The wait is observed in ``ocppgw_backend_connect_wait_seconds``."""
        rate = backend.max_connects_per_s
        if rate is None:
            return
        pacer = self._pacers.get(backend.name)
        if pacer is None or pacer.rate != rate or pacer.max_wait_s != backend.max_connect_wait_s:
            pacer = self._pacers[backend.name] = ConnectPacer(rate, backend.max_connect_wait_s)
        now = asyncio.get_running_loop().time()
        wait = pacer.take(now)
        if wait is None:
            raise BackendBusy(backend.name, pacer.retry_after(now))
        self.metrics.backend_connect_wait.labels(backend.name).observe(wait)
        if wait > 0:
            await asyncio.sleep(wait)

    async def open(
        self,
        backend: BackendConfig,
        charger_id: str,
        *,
        charger_password: str | None = None,
        credentials: tuple[ssl.SSLContext | None, str | None] | None = None,
        log: Any = None,
    ) -> Link:
        """A link to ``backend`` for ``charger_id``, in the backend's OCPP version. ``charger_password``: the
        password the charger presented to the gateway (for ``auth.password_from: charger``); ``credentials``: what
        :meth:`credentials_for` gave, when the caller asked first (admission refuses early without them)."""
        if credentials is None:
            credentials = await self.credentials_for(backend, charger_id, charger_password)
        ssl_context, password = credentials
        return await open_link(
            backend, charger_id, SUBPROTOCOLS[backend.ocpp], self.metrics, self.max_frame,
            ssl_context=ssl_context, password=password, ticker=self.ticker, log=log,
        )  # fmt: skip

    def dormant(
        self,
        backend: BackendConfig,
        charger_id: str,
        credentials: tuple[ssl.SSLContext | None, str | None],
        log: Any = None,
    ) -> Link:
        """A link to ``backend`` that is not open yet (its primary was unreachable at admission and the route rides
        through the outage): the caller attaches its sink and calls :meth:`Link.keep_trying`."""
        ssl_context, password = credentials
        link = Link(backend, charger_id, SUBPROTOCOLS[backend.ocpp], self.metrics, self.max_frame, ssl_context,
                    self.ticker, log)  # fmt: skip
        link.password = password
        return link

    async def credentials_for(
        self, backend: BackendConfig, charger_id: str, charger_password: str | None
    ) -> tuple[ssl.SSLContext | None, str | None]:
        """(client TLS context, Basic auth password) toward ``backend`` for this charger."""
        try:
            ssl_context = self.credentials.client_tls(backend, charger_id)
        except (OSError, ssl.SSLError):
            raise NoUpstreamCredentials(backend.name, "no usable client certificate for this charger") from None
        if backend.security_profile not in (1, 2):
            return ssl_context, None
        password = await self.credentials.password(backend, charger_id, charger_password)
        if password is None:
            raise NoUpstreamCredentials(backend.name, "no upstream password for this charger")
        return ssl_context, password
