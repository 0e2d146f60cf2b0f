"""What the translation end-to-end tests share: a record of the CALLs one side got (:class:`Wire`) and a CSMS
server on loopback (:class:`CsmsServer`) that runs one ``ocpp`` package ChargePoint per connected charger."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from gateway.ops.demo_csms import ConnectionClosed, OcppWs


def now_iso(offset_s: float = 0) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=offset_s)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Wire:
    """CALLs one side received, as they were on the wire (camelCase), and a way to wait for more."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.ids: list[str] = []  # unique ids of those CALLs
        self._changed = asyncio.Event()

    def tap(self, direction: str, text: str) -> None:
        if direction != "in":
            return
        frame = json.loads(text)
        if isinstance(frame, list) and len(frame) == 4 and frame[0] == 2:
            self.calls.append((str(frame[2]), dict(frame[3])))
            self.ids.append(str(frame[1]))
            self._changed.set()

    def of(self, action: str) -> list[dict[str, Any]]:
        return [p for a, p in self.calls if a == action]

    def actions(self) -> list[str]:
        return [a for a, _ in self.calls]

    async def wait(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            self._changed.clear()
            await self._changed.wait()


class CsmsServer:
    """A CSMS on loopback serving ``/ocpp/<charger id>`` in one OCPP version: ``make_point(cid, conn)`` builds the
    ``ocpp`` package ChargePoint (CSMS side) of each connection."""

    def __init__(self, subprotocol: str, make_point: Callable[[str, OcppWs], Any]) -> None:
        self.subprotocol = subprotocol
        self.make_point = make_point
        self.wire: dict[str, Wire] = {}
        self.points: dict[str, Any] = {}
        self.connects: list[str] = []
        self.url = ""
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    def got(self, cid: str) -> Wire:
        return self.wire.setdefault(cid, Wire())

    async def point(self, cid: str) -> Any:
        async with self._changed:
            await self._changed.wait_for(lambda: cid in self.points)
        return self.points[cid]

    async def gone(self, cid: str) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: cid not in self.points)

    async def _set(self, cid: str, point: Any) -> None:
        async with self._changed:
            if point is not None:
                self.points[cid] = point
            elif cid in self.points:
                del self.points[cid]
            self._changed.notify_all()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        cid = request.match_info["cid"]
        ws = web.WebSocketResponse(protocols=(self.subprotocol,))
        await ws.prepare(request)
        assert ws.ws_protocol == self.subprotocol, f"the gateway must speak {self.subprotocol} to this backend"
        self.connects.append(cid)
        point = self.make_point(cid, OcppWs(ws, self.got(cid).tap))
        await self._set(cid, point)
        try:
            await point.start()
        except ConnectionClosed:
            pass
        finally:
            if self.points.get(cid) is point:
                await self._set(cid, None)
        return ws

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/ocpp/{cid}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = getattr(site, "_server", None)
        assert server is not None and server.sockets
        self.url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ocpp"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
