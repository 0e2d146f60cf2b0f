"""A party of the gateway's own on a link: its CALLs go one at a time through a call lane, each awaited.

Mirror feeds (copies toward a mirror backend) and the cutover probe (a new primary's boot and statuses) speak
OCPP-J to a backend without a charger session in between. :class:`LinkCaller` is the link's sink for them: it sends
each CALL with a unique id of its own, matches the answer by that id through a
:class:`~gateway.core.lane.Lane` (one outstanding CALL, a bounded queue, a deadline per CALL), and hands CALLs the
backend sends to ``on_call`` (a mirror's CALLs toward the charger follow the route's ``mirror_calls`` policy).

    caller = LinkCaller(link, timeout_s=30, metrics=metrics, side="mirror")
    reply = await caller.call("BootNotification", payload)    # Reply(kind, payload, code)
    # kind: "result" | "error" (CALLERROR: code) | "timeout" (no answer by the deadline) | "lost" (the link dropped)
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.core.lane import FULL, START, Lane
from gateway.links.link import Link
from gateway.metrics import Metrics
from gateway.ocpp.errors import FrameError
from gateway.ocpp.frames import Call, CallError, CallResult, call_text, parse_frame

__all__ = ["LinkCaller", "Reply"]

ReplyKind = Literal["result", "error", "timeout", "lost"]


@dataclass(frozen=True, slots=True)
class Reply:
    kind: ReplyKind
    payload: dict[str, Any] = field(default_factory=dict)  # the CALLRESULT's payload, or a CALLERROR's details
    code: str = ""  # a CALLERROR's code


class _Waiting:
    __slots__ = ("action", "future", "payload")

    def __init__(self, action: str, payload: dict[str, Any], future: asyncio.Future[Reply]) -> None:
        self.action = action
        self.payload = payload
        self.future = future


class LinkCaller:
    """The sink of ``link`` (attached here): sends the gateway's own CALLs and matches their answers."""

    def __init__(
        self,
        link: Link,
        *,
        timeout_s: float,
        metrics: Metrics,
        side: str,
        on_call: Callable[[Call], None] | None = None,
        on_restored: Callable[[], None] | None = None,
        max_queued: int = 20,
    ) -> None:
        self.link = link
        self.metrics = metrics
        #: the ``side`` label of frame errors and dropped answers (``mirror``, ``backend``)
        self.side = side
        self.on_call = on_call
        self.on_restored = on_restored
        self.lane: Lane[_Waiting] = Lane(max_queued, timeout_s)
        self._ids = 0
        self._prefix = secrets.token_hex(3)
        self._timer: asyncio.TimerHandle | None = None
        link.attach(self)

    async def call(self, action: str, payload: dict[str, Any]) -> Reply:
        """Send a CALL (after the ones before it) and wait for its answer; raises OverflowError when the queue is
        full."""
        if self.link.transport is None:
            return Reply("lost")
        job = _Waiting(action, payload, asyncio.get_running_loop().create_future())
        offered = self.lane.offer(job)
        if offered == FULL:
            raise OverflowError("too many CALLs queued on this link")
        if offered == START:
            self._send(job)
        return await asyncio.shield(job.future)  # a cancelled caller leaves the lane consistent

    def send(self, data: bytes) -> None:
        """A frame of the caller's own making (an answer to the backend's CALL)."""
        self.link.send(data)

    # ------------------------------------------------------------------ LinkSink

    def from_backend(self, text: bytes) -> None:
        try:
            frame = parse_frame(text)
        except FrameError as e:
            if e.close_code is not None:  # invalid UTF-8: the link fails, and reconnects
                self.metrics.frame_errors.labels(self.side, e.kind.value).inc()
                self.link.fail(e.close_code, e.kind.value)
                return
            self.metrics.frame_errors.labels(self.side, "malformed").inc()
            return
        if type(frame) is Call:
            if self.on_call is not None:
                self.on_call(frame)
            return
        assert type(frame) is CallResult or type(frame) is CallError
        job = self.lane.answer(frame.unique_id)
        if job is None:
            self.metrics.dropped_results.labels(f"from_{self.side}", "unknown_id").inc()
            return
        if type(frame) is CallResult:
            self._finish(job, Reply("result", frame.payload))
        else:
            assert type(frame) is CallError
            self._finish(job, Reply("error", frame.details, frame.code))

    def link_lost(self) -> None:
        """Every CALL waiting or queued gets "lost" (its sender decides what to do again)."""
        self._cancel_timer()
        for job in self.lane.clear():
            if not job.future.done():
                job.future.set_result(Reply("lost"))

    def link_restored(self) -> None:
        if self.on_restored is not None:
            self.on_restored()

    def close(self) -> None:
        self.link_lost()

    # ------------------------------------------------------------------ the lane

    def _send(self, job: _Waiting) -> None:
        self._ids += 1
        uid = f"m{self._ids}.{self._prefix}"
        loop = asyncio.get_running_loop()
        self.lane.sent(uid, job.action, loop.time())
        self._timer = loop.call_at(self.lane.deadline, self._expire)
        self.link.send(call_text(uid, job.action, job.payload))

    def _expire(self) -> None:
        self._timer = None
        # the timer is the authority: a loop may run it a hair before the deadline by its own clock (uvloop counts
        # whole milliseconds), and the CALL must not then wait forever
        job = self.lane.expire(max(asyncio.get_running_loop().time(), self.lane.deadline))
        if job is not None:
            self._finish(job, Reply("timeout"))

    def _finish(self, job: _Waiting, reply: Reply) -> None:
        self._cancel_timer()
        if not job.future.done():
            job.future.set_result(reply)
        nxt = self.lane.done()
        if nxt is not None:
            self._send(nxt)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
