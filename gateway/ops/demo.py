"""``ocpp-gateway demo``: the gateway, a built-in CSMS and simulated chargers in one process, frames printed live.

Chargers ``CP16-001``, ``CP201-002``, ``CP21-003``, ... (OCPP 1.6, 2.0.1 and 2.1 in turn, written with the ``ocpp``
package) connect through the gateway, which routes ``CP16-*`` to the backend ``csms-16``, ``CP201-*`` and ``CP21-*``
to ``csms-201`` (the 2.1 chargers translated, set-up C), both served by :class:`gateway.demo_csms.DemoCsms`. A 2.1
charger also opens a periodic event stream and sends its NotifyPeriodicEventStream SENDs, which reach the 2.0.1
CSMS wrapped in DataTransfer. Each charger boots and then loops through a charging session;
the CSMS reads each charger's configuration after boot and remote-starts a charge now and then. ``hub.observe``
prints one line per frame as it passes through the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, TextIO

import aiohttp
from ocpp.exceptions import OCPPError
from ocpp.v16 import ChargePoint as _Cp16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v21 import ChargePoint as _Cp21
from ocpp.v21 import call as call21
from ocpp.v21 import call_result as result21
from ocpp.v201 import ChargePoint as _Cp201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201

from gateway.app.hub import Hub
from gateway.config import Config, parse_config
from gateway.ops.demo_csms import ConnectionClosed, DemoCsms, OcppWs, now_iso, on
from gateway.ops.lifecycle import running_gateway

__all__ = ["Charger16", "Charger201", "Charger21", "ConnectionClosed", "FrameLog", "OcppWs", "demo_config", "run_demo"]

ENERGY, POWER = "Energy.Active.Import.Register", "Power.Active.Import"


class _Sim:
    """What both simulated chargers share: a meter, the CALLs they handled, a wake-up for remote starts."""

    def _sim_init(self) -> None:
        self.energy_wh = float(random.randrange(10_000, 90_000))
        self.handled: list[tuple[str, dict[str, Any]]] = []
        self.remote_tag: str | None = None
        self.wake = asyncio.Event()

    def _handled(self, action: str, kw: dict[str, Any]) -> None:
        self.handled.append((action, kw))

    def _remote(self, id_tag: str) -> None:
        self.remote_tag = id_tag
        self.wake.set()

    async def pause(self, seconds: float) -> None:
        """Sleep, cut short by a remote start."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.wake.wait()
        self.wake.clear()

    def charge(self, seconds: float) -> float:
        """Charge for ``seconds`` (a bit accelerated, so that the numbers move); return the power in W."""
        power = float(random.randrange(7000, 11000, 100))
        self.energy_wh += power * seconds / 3600 * 20
        return power

    def next_tag(self) -> tuple[str, bool]:
        tag, self.remote_tag = self.remote_tag, None
        return (tag, True) if tag else (f"DEMO{random.randrange(10_000):04d}", False)


class Charger16(_Cp16, _Sim):  # type: ignore[misc]
    """A simulated OCPP 1.6 charger (one connector)."""

    subprotocol = "ocpp1.6"

    def __init__(self, cid: str, conn: OcppWs) -> None:
        super().__init__(cid, conn, response_timeout=15)
        self._sim_init()

    @on("RemoteStartTransaction")
    def on_remote_start_transaction(self, id_tag: str, **kw: Any) -> Any:
        self._handled("RemoteStartTransaction", {"id_tag": id_tag, **kw})
        self._remote(id_tag)
        return result16.RemoteStartTransaction(status="Accepted")

    @on("Reset")
    def on_reset(self, type: str, **kw: Any) -> Any:
        self._handled("Reset", {"type": type, **kw})
        return result16.Reset(status="Accepted")

    @on("GetConfiguration")
    def on_get_configuration(self, key: list[str] | None = None, **kw: Any) -> Any:
        self._handled("GetConfiguration", {"key": key, **kw})
        known = {"HeartbeatInterval": "300", "MeterValueSampleInterval": "60", "NumberOfConnectors": "1"}
        keys = key or list(known)
        return result16.GetConfiguration(
            configuration_key=[{"key": k, "readonly": False, "value": known[k]} for k in keys if k in known],
            unknown_key=[k for k in keys if k not in known] or None,
        )

    async def status(self, status: str) -> None:
        await self.call(call16.StatusNotification(connector_id=1, error_code="NoError", status=status), suppress=False)

    async def story(self) -> None:
        """Boot, then charging sessions until cancelled."""
        await self.call(call16.BootNotification(charge_point_model="DemoWall 22", charge_point_vendor="Gateway Demo"))
        await self.status("Available")
        while True:
            await self.call(call16.Heartbeat(), suppress=False)
            tag, _ = self.next_tag()
            auth = await self.call(call16.Authorize(id_tag=tag), suppress=False)
            if auth.id_tag_info["status"] == "Accepted":
                await self.status("Preparing")
                start = await self.call(
                    call16.StartTransaction(
                        connector_id=1, id_tag=tag, meter_start=int(self.energy_wh), timestamp=now_iso()
                    ),
                    suppress=False,
                )
                await self.status("Charging")
                for _ in range(random.randint(2, 4)):
                    dt = random.uniform(1.0, 2.0)
                    await asyncio.sleep(dt)
                    power = self.charge(dt)
                    sampled = [
                        {"value": str(int(self.energy_wh)), "measurand": ENERGY, "unit": "Wh"},
                        {"value": str(int(power)), "measurand": POWER, "unit": "W"},
                    ]
                    await self.call(
                        call16.MeterValues(
                            connector_id=1,
                            transaction_id=start.transaction_id,
                            meter_value=[{"timestamp": now_iso(), "sampledValue": sampled}],
                        ),
                        suppress=False,
                    )
                await self.call(
                    call16.StopTransaction(
                        meter_stop=int(self.energy_wh),
                        timestamp=now_iso(),
                        transaction_id=start.transaction_id,
                        reason="Local",
                        id_tag=tag,
                    ),
                    suppress=False,
                )
                await self.status("Available")
            await self.pause(random.uniform(3.0, 6.0))


class _Charger2x(_Sim):
    """A simulated OCPP 2.0.1 or 2.1 charging station (one EVSE, one connector): the same story, each version's own
    message classes (``C``, ``R``)."""

    C: Any
    R: Any
    call: Callable[..., Any]

    def _init_2x(self) -> None:
        self._sim_init()
        self.remote_start_id: int | None = None

    @on("RequestStartTransaction")
    def on_request_start_transaction(self, id_token: dict[str, Any], remote_start_id: int, **kw: Any) -> Any:
        self._handled("RequestStartTransaction", {"id_token": id_token, "remote_start_id": remote_start_id, **kw})
        self.remote_start_id = remote_start_id
        self._remote(id_token["id_token"])
        return self.R.RequestStartTransaction(status="Accepted")

    @on("Reset")
    def on_reset(self, type: str, **kw: Any) -> Any:
        self._handled("Reset", {"type": type, **kw})
        return self.R.Reset(status="Accepted")

    @on("GetVariables")
    def on_get_variables(self, get_variable_data: list[dict[str, Any]], **kw: Any) -> Any:
        self._handled("GetVariables", {"get_variable_data": get_variable_data, **kw})
        known = {("OCPPCommCtrlr", "HeartbeatInterval"): "300", ("SampledDataCtrlr", "TxUpdatedInterval"): "60"}
        results = []
        for d in get_variable_data:
            value = known.get((d["component"]["name"], d["variable"]["name"]))
            answer = {"attributeStatus": "Accepted" if value is not None else "UnknownVariable"}
            answer |= {"component": d["component"], "variable": d["variable"]}
            results.append(answer if value is None else {**answer, "attributeValue": value})
        return self.R.GetVariables(get_variable_result=results)

    async def status(self, status: str) -> None:
        await self.call(
            self.C.StatusNotification(timestamp=now_iso(), connector_status=status, evse_id=1, connector_id=1),
            suppress=False,
        )

    def meter(self, power: float | None = None) -> list[dict[str, Any]]:
        sampled: list[dict[str, Any]] = [
            {"value": round(self.energy_wh, 1), "measurand": ENERGY, "unitOfMeasure": {"unit": "Wh"}}
        ]
        if power is not None:
            sampled.append({"value": power, "measurand": POWER, "unitOfMeasure": {"unit": "W"}})
        return [{"timestamp": now_iso(), "sampledValue": sampled}]

    async def event(self, event: str, trigger: str, tx: dict[str, Any], seq: int, **kw: Any) -> Any:
        return await self.call(
            self.C.TransactionEvent(
                event_type=event, timestamp=now_iso(), trigger_reason=trigger, seq_no=seq, transaction_info=tx, **kw
            ),
            suppress=False,
        )

    async def booted(self) -> None:
        """After the boot and the first status (a 2.1 charger opens its stream)."""

    async def charging(self, tx: dict[str, Any], power: float) -> None:
        """Between two meter values of a transaction (a 2.1 charger streams its power)."""

    async def story(self) -> None:
        """Boot, then charging sessions until cancelled."""
        station = {"model": "DemoWall 22", "vendorName": "Gateway Demo"}
        await self.call(self.C.BootNotification(charging_station=station, reason="PowerUp"), suppress=False)
        await self.status("Available")
        await self.booted()
        while True:
            await self.call(self.C.Heartbeat(), suppress=False)
            tag, remote = self.next_tag()
            id_token = {"idToken": tag, "type": "Central" if remote else "ISO14443"}
            auth = await self.call(self.C.Authorize(id_token=id_token), suppress=False)
            if auth.id_token_info["status"] == "Accepted":
                tx: dict[str, Any] = {"transactionId": uuid.uuid4().hex[:8], "chargingState": "Charging"}
                if remote and self.remote_start_id is not None:
                    tx["remoteStartId"] = self.remote_start_id
                evse = {"id": 1, "connectorId": 1}
                trigger = "RemoteStart" if remote else "Authorized"
                await self.event("Started", trigger, tx, 0, id_token=id_token, evse=evse, meter_value=self.meter())
                await self.status("Occupied")
                seq = 1
                for seq in range(1, random.randint(3, 5)):
                    dt = random.uniform(1.0, 2.0)
                    await asyncio.sleep(dt)
                    power = self.charge(dt)
                    tx = {"transactionId": tx["transactionId"]}
                    await self.charging(tx, power)
                    await self.event("Updated", "MeterValuePeriodic", tx, seq, meter_value=self.meter(power))
                tx["stoppedReason"] = "Local"
                await self.event("Ended", "StopAuthorized", tx, seq + 1, meter_value=self.meter())
                await self.status("Available")
            await self.pause(random.uniform(3.0, 6.0))


class Charger201(_Charger2x, _Cp201):  # type: ignore[misc]
    """A simulated OCPP 2.0.1 charging station (one EVSE, one connector)."""

    subprotocol = "ocpp2.0.1"
    C, R = call201, result201

    def __init__(self, cid: str, conn: OcppWs) -> None:
        super().__init__(cid, conn, response_timeout=15)
        self._init_2x()


class Charger21(_Charger2x, _Cp21):  # type: ignore[misc]
    """A simulated OCPP 2.1 charging station: the 2.0.1 story, plus a periodic event stream of its power, opened
    after boot (OpenPeriodicEventStream) and fed with NotifyPeriodicEventStream SEND frames while it charges (the
    ``ocpp`` package has no SEND: the frame is written as it is)."""

    subprotocol = "ocpp2.1"
    C, R = call21, result21
    STREAM_ID = 1

    def __init__(self, cid: str, conn: OcppWs) -> None:
        super().__init__(cid, conn, response_timeout=15)
        self._init_2x()
        self.streaming = False
        self.sends = 0

    async def booted(self) -> None:
        stream = {"id": self.STREAM_ID, "variableMonitoringId": 1, "params": {"interval": 1}}
        answer = await self.call(self.C.OpenPeriodicEventStream(constant_stream_data=stream), suppress=False)
        self.streaming = answer.status == "Accepted"

    async def charging(self, tx: dict[str, Any], power: float) -> None:
        if not self.streaming:
            return
        self.sends += 1
        data = [{"t": 0, "v": str(int(power))}]
        payload = {"id": self.STREAM_ID, "pending": 0, "basetime": now_iso(), "data": data}
        await self._send(json.dumps([6, f"s{self.sends}-{uuid.uuid4().hex[:6]}", "NotifyPeriodicEventStream", payload]))


# ----------------------------------------------------------------------------------------------------- the live view

_SKIP = {"timestamp", "currentTime", "seqNo", "context", "location", "unit", "unitOfMeasure", "readonly"}
_SHORT = {
    "connectorId": "connector",
    "evseId": "evse",
    ENERGY: "energy",
    POWER: "power",
    "attributeStatus": "status",
    "eventType": "event",
    "triggerReason": "trigger",
    "connectorStatus": "status",
    "chargingState": "state",
    "chargePointModel": "model",
    "chargePointVendor": "vendor",
    "vendorName": "vendor",
    "stoppedReason": "reason",
}
_ANSI = {"dim": "\033[2m", "red": "\033[31m", "cyan": "\033[36m", "yellow": "\033[33m", "bold": "\033[1m"}
WIDTH = 120


def _fields(node: Any, key: str, out: list[str]) -> None:
    """``key=value`` pairs worth showing from an OCPP payload, flattened."""
    if isinstance(node, dict):
        if "value" in node and ("measurand" in node or "unit" in node or "unitOfMeasure" in node):
            measurand = str(node.get("measurand", ENERGY))
            unit = node.get("unit") or (node.get("unitOfMeasure") or {}).get("unit", "")
            value = node["value"]
            value = int(value) if isinstance(value, float) and value.is_integer() else value
            out.append(f"{_SHORT.get(measurand, measurand)}={value}{unit}")
        elif "component" in node and "variable" in node:
            name = f"{node['component'].get('name')}.{node['variable'].get('name')}"
            value = node.get("attributeValue", node.get("attributeStatus"))
            out.append(name if value is None else f"{name}={value}")
        elif key == "evse" and "id" in node:
            out.append(f"evse={node['id']}")
        elif "key" in node and "readonly" in node:
            out.append(f"{node['key']}={node.get('value', '?')}")
        else:
            for k, v in node.items():
                if k not in _SKIP:
                    _fields(v, k, out)
    elif isinstance(node, list):
        if node and all(not isinstance(v, dict | list) for v in node):
            out.append(f"{_SHORT.get(key, key)}={','.join(map(str, node))}")
        else:
            for v in node:
                _fields(v, key, out)
    elif key and node != "NoError":
        out.append(f"{_SHORT.get(key, key)}={node}")


def _unknown(uid: str) -> str:
    """The action shown for an answer whose CALL the log did not see: the gateway's own (``g<n>.<session>``: a
    translated CALL, sent under the gateway's unique id) or really unknown."""
    return "(translated)" if uid.startswith("g") and "." in uid else "?"


class FrameLog:
    """``hub.observe``: one line per frame passing through the gateway."""

    def __init__(self, hub: Hub, out: TextIO, color: bool) -> None:
        self.hub = hub
        self.out = out
        self.color = color
        self.frames = 0
        self._actions: dict[tuple[str, str], str] = {}

    def _c(self, style: str, text: str) -> str:
        return f"{_ANSI[style]}{text}\033[0m" if self.color else text

    def observe(self, cid: str, side: str, frame: str | bytes) -> None:
        self.frames += 1
        text = frame if isinstance(frame, str) else bytes(frame).decode("utf-8", "replace")
        print(self.line(cid, side, text), file=self.out, flush=True)

    def line(self, cid: str, side: str, text: str) -> str:
        conn = self.hub.conns.get(cid)
        route = conn.route if conn is not None else self.hub.routes.configured(cid)
        backend = route.primary.name if route is not None else "?"
        arrow = "──▶" if side == "charger" else "◀──"
        kind, action, details = "FRAME?", "", [text[:60]]  # not OCPP-J: the gateway refuses it, show it anyway
        try:
            frame = json.loads(text)
            kind_id, uid = frame[0], str(frame[1])
            if kind_id == 2:
                kind, action, details = "CALL", str(frame[2]), []
                self._actions[(cid, uid)] = action
                _fields(frame[3], "", details)
            elif kind_id == 3:
                kind, action, details = "CALLRESULT", self._actions.pop((cid, uid), _unknown(uid)), []
                _fields(frame[2], "", details)
            elif kind_id == 4:
                kind, action = "CALLERROR", self._actions.pop((cid, uid), _unknown(uid))
                details = [str(frame[2]), repr(frame[3])]
            elif kind_id == 6:  # OCPP 2.1: no answer follows
                kind, action, details = "SEND", str(frame[2]), []
                _fields(frame[3], "", details)
            elif kind_id == 5:
                kind, action, details = "CALLRESULTERROR", "", [str(frame[2]), repr(frame[3])]
        except (ValueError, TypeError, IndexError, KeyError, AttributeError):
            pass
        now = datetime.now().strftime("%H:%M:%S.%f")[:-3]
        plain = f"{now}  {cid:<10} {arrow} {backend:<9} {kind:<10} {action:<18} "
        rest = " ".join(details)
        if len(plain) + len(rest) > WIDTH:
            rest = rest[: max(0, WIDTH - len(plain) - 1)] + "…"
        if not self.color:
            return (plain + rest).rstrip()
        arrow_c = self._c("cyan" if side == "charger" else "yellow", arrow)
        kind_c = self._c("red" if kind == "CALLERROR" else "bold", f"{kind:<10}")
        rest_c = self._c("red", rest) if kind == "CALLERROR" else rest
        return f"{self._c('dim', now)}  {cid:<10} {arrow_c} {backend:<9} {kind_c} {action:<18} {rest_c}".rstrip()


# ----------------------------------------------------------------------------------------------------- running it


def demo_config(csms_url: str, port: int, admin_port: int) -> Config:
    return parse_config(
        {
            "listen": {"host": "127.0.0.1", "port": port, "ocpp_versions": ["1.6", "2.0.1", "2.1"]},
            "admin": {"host": "127.0.0.1", "port": admin_port},
            "store": {"url": "memory://"},
            "backends": {
                "csms-16": {"url": csms_url, "ocpp": "1.6"},
                "csms-201": {"url": csms_url, "ocpp": "2.0.1"},
            },
            "routes": [
                {"match": "CP16-*", "primary": "csms-16"},
                {"match": "CP201-*", "primary": "csms-201"},
                {"match": "CP21-*", "primary": "csms-201"},  # translated: set-up C
            ],
            "logging": {"level": "warning", "format": "console"},
            "session": {"shutdown_grace_s": 1, "call_timeout_s": 20},
        },
        env={},
    )


ChargerKind = type[Charger16] | type[Charger201] | type[Charger21]
#: the demo's chargers in turn: CP16-001, CP201-002, CP21-003, CP16-004, ...
KINDS: tuple[tuple[str, ChargerKind], ...] = (("16", Charger16), ("201", Charger201), ("21", Charger21))


async def run_charger(cid: str, kind: ChargerKind, url: str, out: TextIO) -> None:
    """One simulated charger, reconnecting after a drop, until cancelled."""
    while True:
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(f"{url}/{cid}", protocols=(kind.subprotocol,), heartbeat=None) as ws,
            ):
                cp = kind(cid, OcppWs(ws))
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(cp.start(), name=f"{cid}:recv")
                    tg.create_task(cp.story(), name=f"{cid}:story")
        except* (ConnectionClosed, TimeoutError, OCPPError, aiohttp.ClientError, OSError) as eg:
            print(f"{cid}: {type(eg.exceptions[0]).__name__}: {eg.exceptions[0]}; reconnecting in 2 s", file=out)
        await asyncio.sleep(2.0)


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel and await every task. The ocpp package's CALLs wait with ``asyncio.wait_for``, which on Python 3.11
    can swallow a cancellation that lands as the answer arrives: cancel again until every task has ended."""
    pending = {t for t in tasks if not t.done()}
    while pending:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
    for t in tasks:
        if not t.cancelled() and t.exception() is not None:
            raise t.exception()  # type: ignore[misc]


async def run_csms_only(port: int = 9100) -> int:
    """Only the built-in CSMS, at ws://127.0.0.1:<port>/ocpp/<charger id>, until Ctrl-C: the backend that
    config/gateway.yaml points at, to try ``ocpp-gateway run`` with your own chargers."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    csms = DemoCsms()
    try:
        url = await csms.start(port=port)
        print(f"built-in CSMS (OCPP 1.6 + 2.0.1 + 2.1) at {url}/<charger id>; Ctrl-C to stop", flush=True)
        await stop.wait()
    finally:
        await csms.stop()
    return 0


async def run_demo(chargers: int = 3, duration: float = 0, port: int = 9000, admin_port: int = 9001) -> int:
    """Run the demo until Ctrl-C (SIGINT) or ``duration`` seconds (when > 0); return the exit code."""
    out = sys.stdout
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals
        loop.add_signal_handler(signal.SIGINT, stop.set)
    started = time.monotonic()
    csms = DemoCsms()
    try:
        csms_url = await csms.start()
        async with running_gateway(demo_config(csms_url, port, admin_port)) as running:
            log = FrameLog(running.hub, out, color=out.isatty())
            running.hub.observe = log.observe
            url, admin = running.charger_url(), running.admin_url()
            print(
                f"OCPP gateway demo: {chargers} simulated charger(s) -> gateway -> built-in CSMS (OCPP 1.6 + 2.0.1)\n"
                f"  routes               CP16-* -> csms-16, CP201-* and CP21-* (2.1, translated) -> csms-201 "
                f"(both at {csms_url})\n"
                f"  chargers connect to  {url}/<charger id>\n"
                f"  metrics              {admin}/metrics\n"
                f"  chargers API         {admin}/api/chargers\n"
                f"  Ctrl-C to stop{f' (or wait {duration:g} s)' if duration > 0 else ''}\n",
                file=out,
                flush=True,
            )
            tasks = [loop.create_task(csms.operate(), name="csms-operator")]
            for i in range(1, chargers + 1):
                tag, kind = KINDS[(i - 1) % len(KINDS)]
                cid = f"CP{tag}-{i:03d}"
                tasks.append(loop.create_task(run_charger(cid, kind, url, out), name=f"charger:{cid}"))
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(duration if duration > 0 else None):
                        await stop.wait()
            finally:
                await _cancel_all(tasks)
    finally:
        await csms.stop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGINT)
    print(
        f"\ndemo stopped after {time.monotonic() - started:.1f} s: {log.frames} frames relayed, "
        f"{csms.transactions_completed} transaction(s) completed ({csms.transactions_started} started)",
        file=out,
        flush=True,
    )
    return 0
