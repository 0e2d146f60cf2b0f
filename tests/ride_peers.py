"""Two independent, strict OCPP-J implementations as the charger and the CSMS of the ride-through crash tests, behind
one interface, so that a test runs either on either side:

* ``ocpp``: the `ocpp` package (Python), which checks every CALL and CALLRESULT it sends or receives against the
  official JSON schemas (jsonschema);
* ``ocpp-rpc``: the npm package in strict mode (JavaScript, its own copy of the schemas, Ajv), as
  ``tests/interop/charger.js`` and ``csms.js`` run by :mod:`tests.ocpp_rpc`.

A charger (:func:`charger`) keeps its connection: lost (the gateway killed), it opens a new one with the same identity
by itself, every 0.1 to 0.5 s until admitted, and goes on; :meth:`Charger.call` waits for it. It records the unique id
of each CALL it sends (:attr:`Charger.sent`). A CSMS (:func:`csms`) goes down and comes back on the same port
(:meth:`Csms.up`, :meth:`Csms.down`; for ocpp-rpc a new process, as a CSMS restarted), records each CALL it accepted
with its unique id, action and payload as on the wire, in the order they arrived (:meth:`Csms.received`), answers
with its built-in valid answers or those of an ``answers`` table, and may hold its answer to some CALLs for good
(``hold``: a CALL left unanswered when the link drops).

``problems()`` of either are what a correct other side never causes: a frame refused by the schemas or as
malformed, a CALL it had no handler for, a CALLERROR or a CALLRESULT to no CALL of its own. A test asserts there are
none, on both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from ocpp.charge_point import camel_to_snake_case, remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201

from gateway.ops.demo_csms import ConnectionClosed, OcppWs, now_iso
from tests.ocpp_rpc import RpcCharger, RpcCsms, rpc_charger

__all__ = ["FAMILIES", "OCPP", "OCPP_RPC", "Charger", "Csms", "Received", "charger", "csms"]

OCPP, OCPP_RPC = "ocpp", "ocpp-rpc"
FAMILIES = (OCPP, OCPP_RPC)
SUBPROTOCOL = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1"}
#: which CALLs a CSMS holds: {"action": ..., top-level key of the params: value, ...}
Hold = Mapping[str, Any]


@dataclass(frozen=True)
class Received:
    """A CALL a CSMS accepted: its unique id, action and payload (camelCase, as on the wire)."""

    uid: str
    action: str
    payload: dict[str, Any]


class Charger(Protocol):
    family: str
    #: (unique id, action) of each CALL sent, in order
    sent: list[tuple[str, str]]

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]: ...
    async def connected(self, n: int, timeout: float = 30.0) -> None: ...
    def problems(self) -> list[str]: ...
    def transcript(self) -> str: ...


class Csms(Protocol):
    family: str
    url: str

    async def up(self, hold: Iterable[Hold] = ()) -> None: ...
    async def down(self) -> None: ...
    def received(self, cid: str) -> list[Received]: ...
    def problems(self) -> list[str]: ...
    def transcript(self) -> str: ...


def _held(hold: Iterable[Hold], action: str, payload: dict[str, Any]) -> bool:
    return any(h["action"] == action and all(payload.get(k) == v for k, v in h.items() if k != "action") for h in hold)


class _Problems(logging.Handler):
    """What the `ocpp` package logs at WARNING and above: a frame it could not parse, a CALL it refused (schema,
    no handler) or failed to answer, a CALLERROR it got, a response to no CALL of its own."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        self.seen.append(record.getMessage() + (f": {type(error).__name__}: {error}" if error is not None else ""))


def _problem_log(name: str) -> tuple[logging.Logger, _Problems]:
    """A logger of its own for one peer (not in the logging tree: nothing propagates to it or from it)."""
    log = logging.Logger(name, logging.WARNING)
    problems = _Problems()
    log.addHandler(problems)
    return log, problems


# ----------------------------------------------------------------------------------------------- chargers


class _PyCharger:
    """The `ocpp` package's ChargePoint (1.6 or 2.0.1), over a connection it opens again whenever it is lost."""

    family = OCPP

    def __init__(self, url: str, cid: str, version: str) -> None:
        self.url, self.cid = url, cid
        self.subprotocol = SUBPROTOCOL[version]
        self._kind: type[Any] = ChargePoint16 if version == "1.6" else ChargePoint201
        self._calls: ModuleType = call16 if version == "1.6" else call201
        self.log, self._problems = _problem_log(f"ocpp charger {cid}")
        self.sent: list[tuple[str, str]] = []
        self.opened = 0
        self._point: Any = None
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def _set(self, point: Any) -> None:
        async with self._changed:
            self._point = point
            self.opened += point is not None
            self._changed.notify_all()

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    ws = await http.ws_connect(f"{self.url}/{self.cid}", protocols=(self.subprotocol,))
                except aiohttp.ClientError:  # the gateway down or still starting: try again, as a charger does
                    await asyncio.sleep(0.1)
                    continue
                try:
                    if ws.protocol != self.subprotocol:
                        self._problems.seen.append(f"the gateway chose the subprotocol {ws.protocol!r}")
                    point = self._kind(self.cid, OcppWs(ws), response_timeout=15, logger=self.log)
                    await self._set(point)
                    with contextlib.suppress(ConnectionClosed):
                        await point.start()
                finally:
                    await self._set(None)
                    await ws.close()

    async def __aenter__(self) -> _PyCharger:
        self._task = asyncio.create_task(self._run(), name=f"{self.cid}:charger")
        await self.connected(1)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def connected(self, n: int, timeout: float = 30.0) -> None:
        """Once its ``n``-th connection is open."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self.opened >= n and self._point is not None)

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        async with self._changed:
            await self._changed.wait_for(lambda: self._point is not None)
            point = self._point
        uid = str(uuid.uuid4())
        self.sent.append((uid, action))
        request = getattr(self._calls, action)(**camel_to_snake_case(payload))
        result = await point.call(request, suppress=False, unique_id=uid)
        return dict(snake_to_camel_case(remove_nones(serialize_as_dict(result))))

    def problems(self) -> list[str]:
        return list(self._problems.seen)

    def transcript(self) -> str:
        return f"ocpp charger {self.cid}: {self.opened} connection(s), sent {self.sent}, problems {self.problems()}"


class _NodeCharger:
    """charger.js (ocpp-rpc, strict mode), idle, reconnecting by itself."""

    family = OCPP_RPC

    def __init__(self, peer: RpcCharger, subprotocol: str) -> None:
        self.peer, self.subprotocol = peer, subprotocol

    @property
    def sent(self) -> list[tuple[str, str]]:
        return [(e["messageId"], e["action"]) for e in self.peer.sent()]

    async def connected(self, n: int, timeout: float = 30.0) -> None:
        opened = await self.peer.wait(
            lambda e: e["event"] in ("open", "connect_failed") and e.get("n", n) >= n, timeout
        )
        assert opened["event"] == "open", self.transcript()
        assert opened["protocol"] == self.subprotocol, self.transcript()

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        done = await self.peer.command("call", action=action, params=payload, timeout=20)
        assert "response" in done, f"{action} not answered with a CALLRESULT: {done}\n{self.transcript()}"
        return dict(done["response"])

    def problems(self) -> list[str]:
        return [json.dumps(e) for e in self.peer.problems()]

    def transcript(self) -> str:
        return self.peer.transcript()


@contextlib.asynccontextmanager
async def charger(family: str, url: str, cid: str, version: str) -> AsyncIterator[Charger]:
    """A charger of ``family`` speaking ``version``, connected to ``url/cid`` (the gateway must be up)."""
    if family == OCPP:
        async with _PyCharger(url, cid, version) as py:
            yield py
        return
    async with rpc_charger(url, cid, SUBPROTOCOL[version], mode="idle", reconnect=True) as peer:
        node = _NodeCharger(peer, SUBPROTOCOL[version])
        await node.connected(1)
        yield node


# ----------------------------------------------------------------------------------------------- CSMSs


def _builtin_answer(v16: bool, action: str, payload: dict[str, Any], tx: Iterator[int]) -> dict[str, Any]:
    """A permissive CSMS's answers (csms.js answers the same)."""
    if action == "BootNotification":
        return {"status": "Accepted", "currentTime": now_iso(), "interval": 300}
    if action == "Heartbeat":
        return {"currentTime": now_iso()}
    if action == "DataTransfer":
        return {"status": "Accepted"}
    if v16:
        if action in ("Authorize", "StopTransaction"):
            return {"idTagInfo": {"status": "Accepted"}}
        if action == "StartTransaction":
            return {"transactionId": next(tx), "idTagInfo": {"status": "Accepted"}}
        return {}
    if action == "Authorize" or (action == "TransactionEvent" and "idToken" in payload):
        return {"idTokenInfo": {"status": "Accepted"}}
    return {}


_ACTIONS16 = ("BootNotification", "Heartbeat", "StatusNotification", "Authorize", "StartTransaction", "MeterValues",
              "StopTransaction", "DataTransfer")  # fmt: skip
_ACTIONS201 = ("BootNotification", "Heartbeat", "StatusNotification", "Authorize", "TransactionEvent", "MeterValues",
               "NotifyEvent", "DataTransfer")  # fmt: skip


def _point_class(name: str, base: type[Any], results: ModuleType, actions: Iterable[str]) -> type[Any]:
    """The CSMS side of one charger: ``base`` (the package's ChargePoint) with a handler per action, each run only
    for a CALL the package accepted, answering what :meth:`_PyCsms.answer` says."""

    def handler(action: str) -> Any:
        async def handle(self: Any, call_unique_id: str, **_: Any) -> Any:
            reply = await self.csms.answer(self.id, self.wire.pop(call_unique_id), call_unique_id)
            return getattr(results, action)(**camel_to_snake_case(reply))

        handle.__name__ = f"on_{action}"  # the package routes by handler name
        return on(action)(handle)

    return type(name, (base,), {f"on_{a}": handler(a) for a in actions})


_Csms16 = _point_class("Csms16", ChargePoint16, result16, _ACTIONS16)
_Csms201 = _point_class("Csms201", ChargePoint201, result201, _ACTIONS201)


class _PyCsms:
    """A CSMS made of the `ocpp` package's ChargePoint (CSMS side), one per connection, on an aiohttp server."""

    family = OCPP

    def __init__(self, version: str, answers: Mapping[str, dict[str, Any]]) -> None:
        self.v16 = version == "1.6"
        self.subprotocol = SUBPROTOCOL[version]
        self.answers = dict(answers)
        self.hold: list[Hold] = []
        self.port = 0
        self.url = ""
        self.log, self._problems = _problem_log(f"ocpp csms {version}")
        self._received: list[tuple[str, Received]] = []
        self._tx = itertools.count(501)
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()

    async def answer(self, cid: str, frame: tuple[str, dict[str, Any]], uid: str) -> dict[str, Any]:
        action, payload = frame
        self._received.append((cid, Received(uid, action, payload)))
        if _held(self.hold, action, payload):
            await asyncio.Event().wait()  # never: the link goes first
        if action in self.answers:
            return self.answers[action]
        return _builtin_answer(self.v16, action, payload, self._tx)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        cid = request.match_info["cid"]
        ws = web.WebSocketResponse(protocols=(self.subprotocol,))
        await ws.prepare(request)
        if ws.ws_protocol != self.subprotocol:
            self._problems.seen.append(f"{cid}: the gateway offered no {self.subprotocol}")
            await ws.close()
            return ws
        wire: dict[str, tuple[str, dict[str, Any]]] = {}  # CALLs as they came, by unique id, until handled

        def tap(direction: str, text: str) -> None:
            with contextlib.suppress(ValueError):  # not JSON: the package refuses it, and logs it
                frame = json.loads(text)
                if direction == "in" and isinstance(frame, list) and len(frame) == 4 and frame[0] == 2:
                    wire[str(frame[1])] = (str(frame[2]), frame[3])

        point = (_Csms16 if self.v16 else _Csms201)(cid, OcppWs(ws, tap), response_timeout=15, logger=self.log)
        point.csms, point.wire = self, wire
        self._sockets.add(ws)
        try:
            with contextlib.suppress(ConnectionClosed):
                await point.start()
        finally:
            self._sockets.discard(ws)
        return ws

    async def up(self, hold: Iterable[Hold] = ()) -> None:
        """Listen (on the port of the last time, if any)."""
        self.hold = list(hold)
        app = web.Application()
        app.router.add_get("/ocpp/{cid}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        server = getattr(site, "_server", None)
        assert server is not None and server.sockets
        self.port = int(server.sockets[0].getsockname()[1])
        self.url = f"ws://127.0.0.1:{self.port}/ocpp"

    async def down(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def received(self, cid: str) -> list[Received]:
        return [r for c, r in self._received if c == cid]

    def problems(self) -> list[str]:
        return list(self._problems.seen)

    def transcript(self) -> str:
        got = [(c, r.uid, r.action, json.dumps(r.payload)[:200]) for c, r in self._received]
        return f"ocpp csms: received {got}, problems {self.problems()}"


class _NodeCsms:
    """csms.js (ocpp-rpc, strict mode): one node process from each :meth:`up` to the next :meth:`down`."""

    family = OCPP_RPC

    def __init__(self, version: str, answers: Mapping[str, dict[str, Any]]) -> None:
        self.subprotocol = SUBPROTOCOL[version]
        self.answers = dict(answers)
        self.port = 0
        self.url = ""
        self.peers: list[RpcCsms] = []
        self._live: RpcCsms | None = None

    async def up(self, hold: Iterable[Hold] = ()) -> None:
        options = {"port": self.port, "answers": self.answers, "hold": list(hold)}
        peer = await RpcCsms.start("csms.js", self.subprotocol, json.dumps(options))
        self.peers.append(peer)
        self._live = peer
        listening = await peer.wait_for("listening")
        self.port = int(listening["port"])
        self.url = f"ws://127.0.0.1:{self.port}/ocpp"

    async def down(self) -> None:
        if self._live is not None:
            await self._live.stop()
            self._live = None

    def received(self, cid: str) -> list[Received]:
        return [
            Received(e["messageId"], e["action"], e["params"]) for p in self.peers for e in p.of("call", identity=cid)
        ]

    def problems(self) -> list[str]:
        return [json.dumps(e) for p in self.peers for e in p.problems()]

    def transcript(self) -> str:
        return "\n".join(p.transcript() for p in self.peers)


@contextlib.asynccontextmanager
async def csms(family: str, version: str, answers: Mapping[str, dict[str, Any]] | None = None) -> AsyncIterator[Csms]:
    """A CSMS of ``family`` speaking ``version``, not listening yet (:meth:`Csms.up`); ``answers``: action -> the
    answer it gives instead of its built-in one. Down on exit."""
    peer = _PyCsms(version, answers or {}) if family == OCPP else _NodeCsms(version, answers or {})
    try:
        yield peer
    finally:
        await peer.down()
