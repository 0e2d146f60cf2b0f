"""Upstream links: one WebSocket per (charger, backend), opened with the charger's negotiated subprotocol.

``open_link`` connects (bounded by ``connect_timeout_s``) or raises :class:`BackendUnavailable`, so that the edge can
refuse the charger's upgrade with 502/503 and the charger stays offline. :meth:`Link.run` reads the backend's frames
into the session; when the link drops mid-session it reconnects with back-off for up to ``reconnect_grace_s`` and
returns ``False`` if it could not, so the edge closes the charger with 1013 (try again later).
"""

from __future__ import annotations

import asyncio
import random
from urllib.parse import quote

import aiohttp

from gateway.config import BackendConfig
from gateway.errors import BackendUnavailable
from gateway.metrics import Metrics
from gateway.session import Session

__all__ = ["Link", "open_link", "upstream_url"]


def upstream_url(backend: BackendConfig, charger_id: str) -> str:
    """``<backend url>/<charger id>``, the id percent-encoded."""
    return f"{backend.url}/{quote(charger_id, safe='')}"


async def _connect(
    http: aiohttp.ClientSession, backend: BackendConfig, charger_id: str, subprotocol: str, max_frame: int
) -> aiohttp.ClientWebSocketResponse:
    url = upstream_url(backend, charger_id)
    try:
        async with asyncio.timeout(backend.connect_timeout_s):
            ws = await http.ws_connect(
                url,
                protocols=(subprotocol,),
                heartbeat=backend.ping_interval_s or None,
                max_msg_size=max_frame,
                compress=0,
                autoping=True,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
            )
    except TimeoutError:
        raise BackendUnavailable(backend.name, "connect timed out", 503) from None
    except aiohttp.WSServerHandshakeError as e:
        raise BackendUnavailable(backend.name, f"handshake refused with HTTP {e.status}") from None
    except (aiohttp.ClientError, OSError) as e:
        raise BackendUnavailable(backend.name, f"{type(e).__name__}: {e}") from None
    if ws.protocol != subprotocol:
        await ws.close()
        raise BackendUnavailable(backend.name, f"backend did not accept subprotocol {subprotocol}")
    return ws


async def open_link(
    http: aiohttp.ClientSession,
    backend: BackendConfig,
    charger_id: str,
    subprotocol: str,
    metrics: Metrics,
    max_frame: int,
) -> Link:
    """Open the upstream WebSocket or raise :class:`BackendUnavailable` (counted)."""
    try:
        ws = await _connect(http, backend, charger_id, subprotocol, max_frame)
    except BackendUnavailable as e:
        metrics.backend_connects.labels(backend.name, "timeout" if e.http_status == 503 else "error").inc()
        raise
    metrics.backend_connects.labels(backend.name, "ok").inc()
    metrics.backend_links.labels(backend.name).inc()
    return Link(http, backend, charger_id, subprotocol, metrics, max_frame, ws)


class Link:
    """An open upstream link. Owned by the charger's handler task, which runs :meth:`run` and then :meth:`close`."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        backend: BackendConfig,
        charger_id: str,
        subprotocol: str,
        metrics: Metrics,
        max_frame: int,
        ws: aiohttp.ClientWebSocketResponse,
    ) -> None:
        self.http = http
        self.backend = backend
        self.charger_id = charger_id
        self.subprotocol = subprotocol
        self.metrics = metrics
        self.max_frame = max_frame
        self.ws: aiohttp.ClientWebSocketResponse | None = ws
        self.closing = False
        self._gauge = metrics.backend_links.labels(backend.name)

    async def send(self, text: str) -> None:
        """Send a frame upstream; while the link is down the session does not call this."""
        ws = self.ws
        if ws is None or ws.closed:
            raise ConnectionResetError("backend link is down")
        await ws.send_str(text)

    async def run(self, session: Session) -> bool:
        """Feed backend frames to ``session`` until the link ends.

        Returns True when closed on purpose (:meth:`close`), False when it dropped and could not be re-established
        within the grace period.
        """
        log = session.log
        while True:
            ws = self.ws
            assert ws is not None
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    await session.from_backend(msg.data)
                elif msg.type is aiohttp.WSMsgType.BINARY:
                    self.metrics.frame_errors.labels("backend", "binary").inc()
            if self.closing:
                return True
            # Dropped mid-session.
            self.ws = None
            self._gauge.dec()
            self.metrics.backend_link_lost.labels(self.backend.name).inc()
            session.link_lost()
            if log is not None:
                log.warning("backend_link_lost", close_code=ws.close_code)
            if not await self._reconnect(session):
                return False
            self.metrics.backend_reconnects.labels(self.backend.name).inc()
            if log is not None:
                log.info("backend_link_restored")
            await session.link_restored()

    async def _reconnect(self, session: Session) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.backend.reconnect_grace_s
        delay = 0.2
        while not self.closing:
            try:
                async with asyncio.timeout_at(deadline):
                    ws = await _connect(self.http, self.backend, self.charger_id, self.subprotocol, self.max_frame)
            except TimeoutError:
                self.metrics.backend_connects.labels(self.backend.name, "timeout").inc()
                return False
            except BackendUnavailable:
                self.metrics.backend_connects.labels(self.backend.name, "error").inc()
                if loop.time() + delay >= deadline:
                    return False
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 5.0)
                continue
            self.metrics.backend_connects.labels(self.backend.name, "ok").inc()
            if self.closing:
                await ws.close()
                return False
            self.ws = ws
            self._gauge.inc()
            return True
        return False

    async def close(self) -> None:
        """Close the link (idempotent)."""
        self.closing = True
        ws, self.ws = self.ws, None
        if ws is not None:
            self._gauge.dec()
            await ws.close()
