"""The demo's built-in CSMS, and the connection adapter the ``ocpp`` package needs over aiohttp WebSockets.

:class:`DemoCsms` is a small CSMS written with the ``ocpp`` package (its v16 and v201 ChargePoint classes on the
CSMS side, payloads validated against the official schemas by the package). It serves ``/ocpp/<charger id>`` with
the subprotocols ``ocpp1.6``, ``ocpp2.0.1`` and ``ocpp2.1``, records every CALL it receives
(:attr:`DemoCsms.received`) and every SEND and CALLRESULTERROR frame as it came (:attr:`DemoCsms.frames_v21`;
the ``ocpp`` package itself ignores both), and answers like a permissive CSMS: Boot Accepted with an interval,
Authorize Accepted (tags starting with ``BLOCK`` are Blocked), StartTransaction with an incrementing transactionId,
TransactionEvent with the total cost when it ends, a DataTransfer of vendorId ``org.openchargealliance.ocpp21``
(a 2.1 message the gateway wrapped for a 2.0.1 CSMS) Accepted, any other UnknownVendorId.
The demo and the end-to-end tests share it, and :class:`OcppWs`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import aiohttp
from aiohttp import web
from ocpp.exceptions import OCPPError
from ocpp.routing import on as _ocpp_on
from ocpp.v16 import ChargePoint as _Cp16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v21 import ChargePoint as _Cp21
from ocpp.v21 import call as call21
from ocpp.v21 import call_result as result21
from ocpp.v201 import ChargePoint as _Cp201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201

__all__ = [
    "ConnectionClosed", "Csms16Point", "Csms201Point", "Csms21Point", "DemoCsms", "OcppWs", "Received", "now_iso",
    "on",
]  # fmt: skip

#: the DataTransfer vendorId under which the gateway wraps 2.1 messages for a 2.0.1 CSMS
V21_VENDOR = "org.openchargealliance.ocpp21"

F = TypeVar("F", bound=Callable[..., Any])
WebSocket = aiohttp.ClientWebSocketResponse | web.WebSocketResponse
#: price per kWh the demo CSMS bills in 2.0.1 TransactionEvent Ended answers
PRICE_PER_KWH = 0.30


def on(action: str) -> Callable[[F], F]:
    """``ocpp.routing.on`` with a type (the ``ocpp`` package is untyped)."""
    return cast(Callable[[F], F], _ocpp_on(action))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ConnectionClosed(Exception):
    """The WebSocket under an :class:`OcppWs` closed; ends the ``ocpp`` ChargePoint's ``start()`` loop."""


class OcppWs:
    """The connection the ``ocpp`` package's ChargePoint expects (``recv``/``send``), over an aiohttp WebSocket.

    Works for both ends (``ClientWebSocketResponse`` and ``web.WebSocketResponse``). ``tap(direction, text)``, when
    given, sees each text frame (``"in"`` or ``"out"``).
    """

    def __init__(self, ws: WebSocket, tap: Callable[[str, str], None] | None = None) -> None:
        self.ws = ws
        self.tap = tap

    async def recv(self) -> str:
        while True:
            msg = await self.ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                text = str(msg.data)
                if self.tap is not None:
                    self.tap("in", text)
                return text
            if msg.type is not aiohttp.WSMsgType.BINARY:  # close, closing, closed, error: OCPP-J is over
                raise ConnectionClosed(f"websocket closed ({msg.type.name}, code {self.ws.close_code})")

    async def send(self, text: str) -> None:
        if self.ws.closed:
            raise ConnectionClosed("websocket closed")
        if self.tap is not None:
            self.tap("out", text)
        try:
            await self.ws.send_str(text)
        except (ConnectionError, RuntimeError) as e:
            raise ConnectionClosed(str(e)) from e


@dataclass(frozen=True, slots=True)
class Received:
    """A CALL the CSMS received, payload exactly as on the wire (camelCase)."""

    charger_id: str
    action: str
    payload: dict[str, Any]


def energy_wh(meter_values: Any) -> float | None:
    """The last Energy.Active.Import.Register in a (snake_case or camelCase) list of meter values, in Wh."""
    found: float | None = None
    for mv in meter_values or []:
        for sv in mv.get("sampled_value") or mv.get("sampledValue") or []:
            if sv.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register":
                found = float(sv["value"])
    return found


class Csms16Point(_Cp16):  # type: ignore[misc]
    """The CSMS side of one OCPP 1.6 charger."""

    def __init__(self, cid: str, conn: OcppWs, csms: DemoCsms) -> None:
        super().__init__(cid, conn, response_timeout=15)
        self.csms = csms

    @on("BootNotification")
    def on_boot_notification(self, **_: Any) -> Any:
        self.csms.booted.put_nowait(self.id)
        return result16.BootNotification(current_time=now_iso(), interval=self.csms.interval, status="Accepted")

    @on("Heartbeat")
    def on_heartbeat(self, **_: Any) -> Any:
        return result16.Heartbeat(current_time=now_iso())

    @on("StatusNotification")
    def on_status_notification(self, **_: Any) -> Any:
        return result16.StatusNotification()

    @on("Authorize")
    def on_authorize(self, id_tag: str, **_: Any) -> Any:
        return result16.Authorize(id_tag_info={"status": self.csms.authorize(id_tag)})

    @on("StartTransaction")
    def on_start_transaction(self, id_tag: str, **_: Any) -> Any:
        tx = self.csms.new_transaction(self.id)
        return result16.StartTransaction(transaction_id=tx, id_tag_info={"status": self.csms.authorize(id_tag)})

    @on("StopTransaction")
    def on_stop_transaction(self, **_: Any) -> Any:
        self.csms.transactions_completed += 1
        return result16.StopTransaction(id_tag_info={"status": "Accepted"})

    @on("MeterValues")
    def on_meter_values(self, **_: Any) -> Any:
        return result16.MeterValues()

    async def read_config(self) -> Any:
        return await self.call(call16.GetConfiguration(key=["HeartbeatInterval", "MeterValueSampleInterval"]))

    async def remote_start(self, id_tag: str = "REMOTE01") -> Any:
        return await self.call(call16.RemoteStartTransaction(id_tag=id_tag, connector_id=1))


class _Csms2x:
    """The CSMS side of one OCPP 2.0.1 or 2.1 charging station (2.1 is a superset: the same handlers, each
    version's own message classes, ``C`` and ``R``)."""

    C: Any
    R: Any
    id: str
    call: Callable[..., Any]

    def _csms_init(self, csms: DemoCsms) -> None:
        self.csms = csms
        self.start_wh: dict[str, float] = {}

    @on("BootNotification")
    def on_boot_notification(self, **_: Any) -> Any:
        self.csms.booted.put_nowait(self.id)
        return self.R.BootNotification(current_time=now_iso(), interval=self.csms.interval, status="Accepted")

    @on("Heartbeat")
    def on_heartbeat(self, **_: Any) -> Any:
        return self.R.Heartbeat(current_time=now_iso())

    @on("StatusNotification")
    def on_status_notification(self, **_: Any) -> Any:
        return self.R.StatusNotification()

    @on("Authorize")
    def on_authorize(self, id_token: dict[str, Any], **_: Any) -> Any:
        return self.R.Authorize(id_token_info={"status": self.csms.authorize(id_token["id_token"])})

    @on("TransactionEvent")
    def on_transaction_event(
        self, event_type: str, transaction_info: dict[str, Any], id_token: dict[str, Any] | None = None, **kw: Any
    ) -> Any:
        tx = str(transaction_info["transaction_id"])
        wh = energy_wh(kw.get("meter_value"))
        cost: float | None = None
        if event_type == "Started":
            self.csms.transactions_started += 1
            self.csms.transaction_ids.setdefault(self.id, []).append(tx)
            self.start_wh[tx] = wh or 0.0
        elif event_type == "Ended":
            self.csms.transactions_completed += 1
            start = self.start_wh.pop(tx, 0.0)
            cost = round(max(0.0, (wh if wh is not None else start) - start) / 1000 * PRICE_PER_KWH, 2)
        info = None if id_token is None else {"status": self.csms.authorize(id_token["id_token"])}
        return self.R.TransactionEvent(total_cost=cost, id_token_info=info)

    @on("MeterValues")
    def on_meter_values(self, **_: Any) -> Any:
        return self.R.MeterValues()

    @on("DataTransfer")
    def on_data_transfer(self, vendor_id: str, **_: Any) -> Any:
        return self.R.DataTransfer(status="Accepted" if vendor_id == V21_VENDOR else "UnknownVendorId")

    async def read_config(self) -> Any:
        wanted = [("OCPPCommCtrlr", "HeartbeatInterval"), ("SampledDataCtrlr", "TxUpdatedInterval")]
        data = [{"component": {"name": c}, "variable": {"name": v}} for c, v in wanted]
        return await self.call(self.C.GetVariables(get_variable_data=data))

    async def remote_start(self, id_tag: str = "REMOTE01") -> Any:
        self.csms.remote_start_ids += 1
        return await self.call(
            self.C.RequestStartTransaction(
                id_token={"idToken": id_tag, "type": "Central"}, remote_start_id=self.csms.remote_start_ids, evse_id=1
            )
        )


class Csms201Point(_Csms2x, _Cp201):  # type: ignore[misc]
    """The CSMS side of one OCPP 2.0.1 charging station."""

    C, R = call201, result201

    def __init__(self, cid: str, conn: OcppWs, csms: DemoCsms) -> None:
        super().__init__(cid, conn, response_timeout=15)
        self._csms_init(csms)


class Csms21Point(_Csms2x, _Cp21):  # type: ignore[misc]
    """The CSMS side of one OCPP 2.1 charging station. It accepts periodic event streams (the ``ocpp`` package, 2.1.0,
    answers nothing at all to a 2.1 CALL that has no handler, where it answers NotImplemented in 1.6 and 2.0.1)."""

    C, R = call21, result21

    def __init__(self, cid: str, conn: OcppWs, csms: DemoCsms) -> None:
        super().__init__(cid, conn, response_timeout=15)
        self._csms_init(csms)

    @on("OpenPeriodicEventStream")
    def on_open_periodic_event_stream(self, **_: Any) -> Any:
        return self.R.OpenPeriodicEventStream(status="Accepted")

    @on("ClosePeriodicEventStream")
    def on_close_periodic_event_stream(self, **_: Any) -> Any:
        return self.R.ClosePeriodicEventStream()


#: subprotocol -> the CSMS side of a charger speaking it
_POINTS: dict[str, type[Csms16Point] | type[Csms201Point] | type[Csms21Point]] = {
    "ocpp1.6": Csms16Point,
    "ocpp2.0.1": Csms201Point,
    "ocpp2.1": Csms21Point,
}


class DemoCsms:
    """A CSMS on loopback serving ``/ocpp/<charger id>`` for OCPP 1.6, 2.0.1 and 2.1."""

    def __init__(self, interval: int = 300) -> None:
        self.interval = interval
        self.received: list[Received] = []
        #: (charger id, frame text) of every SEND and CALLRESULTERROR received (OCPP 2.1), as it came
        self.frames_v21: list[tuple[str, str]] = []
        #: connected chargers, CSMS side (Csms16Point or Csms201Point): ``await point.call(...)`` to talk to one
        self.points: dict[str, Any] = {}
        #: charger ids, as their BootNotification arrives (the demo reads their configuration then)
        self.booted: asyncio.Queue[str] = asyncio.Queue()
        #: transaction ids per charger: assigned by this CSMS (1.6) or seen starting (2.0.1)
        self.transaction_ids: dict[str, list[int | str]] = {}
        self.transactions_started = 0
        self.transactions_completed = 0
        self.remote_start_ids = 0
        self.url = ""
        self._tx = itertools.count(1001)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    def authorize(self, id_tag: str) -> str:
        return "Blocked" if id_tag.upper().startswith("BLOCK") else "Accepted"

    def new_transaction(self, cid: str) -> int:
        tx = next(self._tx)
        self.transactions_started += 1
        self.transaction_ids.setdefault(cid, []).append(tx)
        return tx

    def calls(self, cid: str, action: str) -> list[dict[str, Any]]:
        """Payloads of the CALLs ``action`` received from ``cid``, in order."""
        return [r.payload for r in self.received if r.charger_id == cid and r.action == action]

    async def point(self, cid: str) -> Any:
        """The CSMS side of ``cid`` once it is connected."""
        async with self._changed:
            await self._changed.wait_for(lambda: cid in self.points)
        return self.points[cid]

    async def gone(self, cid: str) -> None:
        """Return once ``cid`` is not connected (its link closed)."""
        async with self._changed:
            await self._changed.wait_for(lambda: cid not in self.points)

    async def _set_point(self, cid: str, point: Any) -> None:
        async with self._changed:
            if point is not None:
                self.points[cid] = point
            elif cid in self.points:
                del self.points[cid]
            self._changed.notify_all()

    def _tap(self, cid: str, direction: str, text: str) -> None:
        if direction == "in":
            frame = json.loads(text)
            if isinstance(frame, list) and len(frame) == 4 and frame[0] == 2:
                self.received.append(Received(cid, str(frame[2]), dict(frame[3])))
            elif isinstance(frame, list) and frame and frame[0] in (5, 6):
                self.frames_v21.append((cid, text))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        cid = request.match_info["cid"]
        ws = web.WebSocketResponse(protocols=tuple(_POINTS))
        await ws.prepare(request)
        kind = _POINTS.get(ws.ws_protocol or "")
        if kind is None:
            await ws.close(code=1002, message=b"no OCPP subprotocol in common")
            return ws
        point = kind(cid, OcppWs(ws, lambda d, t: self._tap(cid, d, t)), self)
        await self._set_point(cid, point)
        try:
            await point.start()
        except ConnectionClosed:
            pass
        finally:
            if self.points.get(cid) is point:
                await self._set_point(cid, None)
        return ws

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen; return the base URL (``ws://host:port/ocpp``) a backend config points at."""
        app = web.Application()
        app.router.add_get("/ocpp/{cid}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = getattr(site, "_server", None)
        bound = int(server.sockets[0].getsockname()[1]) if server is not None and server.sockets else port
        self.url = f"ws://{host}:{bound}/ocpp"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def operate(self, every: float = 8.0) -> None:
        """What an operator would do (demo only; runs until cancelled).

        Reads each charger's configuration right after its boot (GetConfiguration / GetVariables), and every
        ``every`` seconds remote-starts a charge on a random charger (RemoteStartTransaction /
        RequestStartTransaction).
        """
        while True:
            remote = False
            try:
                async with asyncio.timeout(every):
                    cid = await self.booted.get()
            except TimeoutError:
                if not self.points:
                    continue
                cid, remote = random.choice(sorted(self.points)), True
            point = self.points.get(cid)
            if point is None:
                continue
            with suppress(ConnectionClosed, TimeoutError, OCPPError):
                await (point.remote_start() if remote else point.read_config())
