"""LinkCaller over a real upstream link (picows, from the link factory) to a loopback StubCsms: the gateway's own
CALLs one at a time, matched by unique id, with their four outcomes, and CALLs the backend sends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from gateway.links.caller import LinkCaller, Reply
from gateway.links.credentials import UpstreamCredentials
from gateway.links.factory import LinkFactory
from gateway.links.link import Link
from gateway.metrics import Metrics
from gateway.ocpp.frames import Call, call_result_text
from gateway.store import MemoryStore
from gateway.transport import Ticker
from tests.helpers import Answer, StubCsms, make_config, stub_csms

CID = "CP1"


def silent(cid: str, action: str, payload: dict[str, Any]) -> None:
    """The stub answers nothing (the test answers by hand, or not at all)."""
    return None


@dataclass
class Wire:
    stub: StubCsms
    link: Link
    caller: LinkCaller
    metrics: Metrics
    #: CALLs the backend sent, as on_call got them
    from_backend: list[Call]
    got_call: asyncio.Event
    restored: asyncio.Event

    @property
    def ws(self) -> web.WebSocketResponse:
        return self.stub.sockets[CID]

    def calls(self) -> list[list[Any]]:
        """The CALLs the stub received, in order."""
        return [f for c, f in self.stub.received if f[0] == 2]

    async def received(self, count: int) -> None:
        """Wait until the stub has received ``count`` CALLs."""
        await self.stub.wait_for(lambda: len(self.calls()) >= count)

    async def send(self, frame: list[Any]) -> None:
        """A frame from the backend."""
        await self.ws.send_str(json.dumps(frame))

    async def flushed(self, mark: str) -> None:
        """Wait until everything the caller sent so far has reached the stub: a frame of the caller's own after it
        (the socket keeps order) is seen."""
        self.caller.send(call_result_text(mark, {}))
        await self.stub.wait_for(lambda: any(f == [3, mark, {}] for _, f in self.stub.received))


@asynccontextmanager
async def wire(answer: Answer | None = None, *, timeout_s: float = 2.0, max_queued: int = 20) -> AsyncIterator[Wire]:
    async with stub_csms(answer) as stub:
        config = make_config({"csms": stub.url})
        metrics, store = Metrics(), MemoryStore()
        factory = LinkFactory(UpstreamCredentials(config, store), metrics, Ticker(), 65536)
        link = await factory.open(config.backends["csms"], CID)
        from_backend: list[Call] = []
        got_call, restored = asyncio.Event(), asyncio.Event()

        def on_call(call: Call) -> None:
            from_backend.append(call)
            got_call.set()

        caller = LinkCaller(
            link, timeout_s=timeout_s, metrics=metrics, side="mirror", on_call=on_call, on_restored=restored.set,
            max_queued=max_queued,
        )  # fmt: skip
        try:
            yield Wire(stub, link, caller, metrics, from_backend, got_call, restored)
        finally:
            caller.close()
            await link.close()


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_call_gets_its_result() -> None:
    def answer(cid: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {"status": "Accepted", "echo": payload, "to": cid}

    async with wire(answer) as w, asyncio.timeout(2.0):
        reply = await w.caller.call("DataTransfer", {"vendorId": "v", "data": "1"})
        assert reply == Reply("result", {"status": "Accepted", "echo": {"vendorId": "v", "data": "1"}, "to": CID})
        again = await w.caller.call("Heartbeat", {})
        assert again.kind == "result"
        (first, second) = w.calls()
        assert first[2:] == ["DataTransfer", {"vendorId": "v", "data": "1"}] and second[2:] == ["Heartbeat", {}]
        assert first[1] != second[1]  # a unique id of the caller's own per CALL
        assert w.link.subprotocol == "ocpp1.6"  # the backend's version (1.6 by default)


async def test_concurrent_calls_go_one_at_a_time_in_order() -> None:
    async with wire(silent) as w, asyncio.timeout(2.0):
        tasks = [asyncio.create_task(w.caller.call("DataTransfer", {"n": i})) for i in range(3)]
        await w.received(1)
        for i in range(3):
            await w.flushed(f"mark{i}")  # whatever the caller sent until now is at the stub: only CALL i
            assert [c[3] for c in w.calls()] == [{"n": k} for k in range(i + 1)]
            assert not any(t.done() for t in tasks[i:])
            await w.send([3, w.calls()[i][1], {"n": i}])
            if i < 2:
                await w.received(i + 2)  # the next one goes once answered
        replies = await asyncio.gather(*tasks)
        assert [r.payload for r in replies] == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert len({c[1] for c in w.calls()}) == 3


async def test_a_callerror_comes_back_as_an_error_with_its_code() -> None:
    async with wire(silent) as w, asyncio.timeout(2.0):
        task = asyncio.create_task(w.caller.call("Authorize", {"idTag": "T"}))
        await w.received(1)
        await w.send([4, w.calls()[0][1], "NotImplemented", "no such thing here", {"why": "test"}])
        reply = await task
        assert (reply.kind, reply.code, reply.payload) == ("error", "NotImplemented", {"why": "test"})


async def test_a_backend_that_does_not_answer_gives_a_timeout_and_its_late_answer_is_dropped() -> None:
    def answer(cid: str, action: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        return None if action == "Slow" else {}

    timeout_s = 0.05
    loop = asyncio.get_running_loop()
    async with wire(answer, timeout_s=timeout_s) as w, asyncio.timeout(2.0):
        started = loop.time()
        reply = await w.caller.call("Slow", {})
        assert reply.kind == "timeout"
        assert loop.time() - started >= timeout_s - 1e-3
        await w.send([3, w.calls()[0][1], {}])  # its answer, too late
        assert (await w.caller.call("Heartbeat", {})).kind == "result"  # the lane moved on; its answer came after
        assert sample(w.metrics, "ocppgw_dropped_results_total", direction="from_mirror", reason="unknown_id") == 1


async def test_the_backend_closing_the_connection_gives_lost_to_the_waiting_calls() -> None:
    def answer(cid: str, action: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        return None if action == "Slow" else {}

    async with wire(answer) as w, asyncio.timeout(2.0):
        waiting = asyncio.create_task(w.caller.call("Slow", {}))
        queued = asyncio.create_task(w.caller.call("Heartbeat", {}))
        await w.received(1)
        await w.ws.close()
        assert (await waiting).kind == "lost"
        assert (await queued).kind == "lost"  # never sent: its sender decides what to do again
        assert [c[2] for c in w.calls()] == ["Slow"]
        await w.restored.wait()  # the link reconnected (on_restored)
        assert w.stub.connects == [CID, CID]
        assert (await w.caller.call("Heartbeat", {})).kind == "result"


async def test_a_call_without_a_link_is_lost_at_once() -> None:
    async with wire() as w, asyncio.timeout(2.0):
        await w.link.close()
        assert await w.caller.call("Heartbeat", {}) == Reply("lost")
        assert w.calls() == []


async def test_a_call_from_the_backend_reaches_on_call_and_can_be_answered() -> None:
    async with wire(silent) as w, asyncio.timeout(2.0):
        pending = asyncio.create_task(w.caller.call("Heartbeat", {}))
        await w.received(1)
        await w.send([2, "b-1", "GetConfiguration", {"key": ["HeartbeatInterval"]}])
        await w.got_call.wait()
        (call,) = w.from_backend
        assert (call.unique_id, call.action, call.payload) == (
            "b-1",
            "GetConfiguration",
            {"key": ["HeartbeatInterval"]},
        )
        w.caller.send(call_result_text("b-1", {"configurationKey": []}))
        await w.stub.wait_for(lambda: any(f == [3, "b-1", {"configurationKey": []}] for _, f in w.stub.received))
        assert not pending.done()  # the backend's CALL is no answer to ours
        await w.send([3, w.calls()[0][1], {"currentTime": "2024-01-01T00:00:00Z"}])
        assert (await pending).payload == {"currentTime": "2024-01-01T00:00:00Z"}


async def test_a_malformed_frame_from_the_backend_is_counted_and_ignored() -> None:
    async with wire(silent) as w, asyncio.timeout(2.0):
        pending = asyncio.create_task(w.caller.call("Heartbeat", {}))
        await w.received(1)
        await w.ws.send_str("not json")
        await w.send([3, w.calls()[0][1], {}])
        assert (await pending).kind == "result"
        assert sample(w.metrics, "ocppgw_frame_errors_total", side="mirror", kind="malformed") == 1


async def test_invalid_utf8_from_the_backend_fails_the_link_with_1007_and_it_reconnects() -> None:
    async with wire(silent) as w, asyncio.timeout(2.0):
        pending = asyncio.create_task(w.caller.call("Heartbeat", {}))
        await w.received(1)
        first = w.ws
        await first.send_frame(b'[3,"x",{"a":"\xff"}]', WSMsgType.TEXT)
        assert (await pending).kind == "lost"
        await w.restored.wait()
        assert first.close_code == 1007
        assert w.stub.connects == [CID, CID]
        assert sample(w.metrics, "ocppgw_frame_errors_total", side="mirror", kind="invalid_utf8") == 1


async def test_a_full_queue_refuses_the_call() -> None:
    async with wire(silent, max_queued=1) as w, asyncio.timeout(2.0):
        current = asyncio.create_task(w.caller.call("A", {}))
        queued = asyncio.create_task(w.caller.call("B", {}))
        await w.received(1)
        with pytest.raises(OverflowError):
            await w.caller.call("C", {})
        await w.send([3, w.calls()[0][1], {}])
        await w.received(2)
        await w.send([3, w.calls()[1][1], {}])
        assert [(await current).kind, (await queued).kind] == ["result", "result"]
        assert [c[2] for c in w.calls()] == ["A", "B"]


async def test_a_timeout_comes_even_when_the_loop_runs_the_timer_a_little_early() -> None:
    loop = asyncio.get_running_loop()
    resolution = loop._clock_resolution  # type: ignore[attr-defined]
    async with wire(silent, timeout_s=0.1) as w:
        task = asyncio.create_task(w.caller.call("Slow", {}))
        try:
            await w.received(1)
            # a loop whose clock has 50 ms steps (asyncio runs every timer due within its clock resolution), woken
            # by something else 20 ms before the CALL's deadline: its timer runs then, early by the loop's clock
            loop._clock_resolution = 0.05  # type: ignore[attr-defined]
            loop.call_at(w.caller.lane.deadline - 0.02, lambda: None)
            async with asyncio.timeout(0.4):  # due 0.1 s after it was sent
                assert (await task).kind == "timeout"
        finally:
            loop._clock_resolution = resolution  # type: ignore[attr-defined]
