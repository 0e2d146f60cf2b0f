"""One connected charger: the OCPP-J bookkeeping between the charger and its primary backend.

The session is driven by its edge (``server.py``) and its link (``upstream.py``) through two entry points,
:meth:`Session.from_charger` and :meth:`Session.from_backend`, each taking one text frame as UTF-8 bytes. It sends
through two callables it is given (``send_charger``, ``send_backend``) that queue bytes on a transport without
blocking; it knows nothing of WebSocket libraries. Everything here is synchronous: a frame in is handled to the end
within the transport's read callback, with no task and no per message.

Rules it enforces (OCPP-J: one outstanding CALL per direction):

* ``up`` is the charger -> backend direction, ``down`` the backend/admin -> charger direction. Each has at most one
  outstanding CALL (:class:`Pending`) and a bounded queue behind it (depth is a metric; overflow is answered with a
  CALLERROR, never dropped silently).
* An answer (CALLRESULT/CALLERROR) is delivered only to the party whose CALL has that unique id. A late or unknown
  answer is dropped and counted, never delivered to the wrong party.
* A malformed frame gets the CALLERROR its sender's version names when its unique id can be read; nothing malformed
  reaches the other side. The session lives on.
* Pass-through forwards the original text unchanged.
* Deadlines are data (``Pending.deadline`` on the loop clock); :meth:`Session.expire` is called by the gateway's
  sweeper, so there is no timer per message.

The seam for translation: ``translator`` (see :mod:`gateway.translate.base`) is None in pass-through. The session
answers ``InternalError`` to a CALL it cannot relay because a translator refused it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.metrics import Metrics
from gateway.ocpp import schemas
from gateway.ocpp.actions import action_label
from gateway.ocpp.errors import FrameError
from gateway.ocpp.frames import Call, CallError, CallResult, Raw, call_error_text, call_text, parse_frame
from gateway.store.base import Write

__all__ = ["AdminAnswer", "Pending", "Session", "SessionSettings", "answer_payload"]

Send = Callable[[Raw], None]


@dataclass(slots=True)
class AdminAnswer:
    """What the charger answered to an admin CALL."""

    result: dict[str, Any] | None = None
    error: tuple[str, str, dict[str, Any]] | None = None


@dataclass(slots=True)
class Pending:
    """The outstanding CALL of one direction."""

    unique_id: str
    action: str
    started: float
    deadline: float
    #: None: answer goes to the other side; a future: the answer is for the gateway itself (admin API)
    waiter: asyncio.Future[AdminAnswer] | None = None
    #: the CALL's frame as received (a reference, for mirror copies)
    raw: Raw | None = None


@dataclass(frozen=True, slots=True)
class SessionSettings:
    call_timeout_s: float = 60.0
    max_queued_calls: int = 20
    #: check every CALL against its version's schema (refused with the version's CALLERROR) and every CALLRESULT
    #: (an invalid answer is counted and logged, then forwarded: OCPP-J has no error channel for answers)
    validate: bool = False


@dataclass(slots=True)
class _Queued:
    call: Call
    waiter: asyncio.Future[AdminAnswer] | None = None


@dataclass(slots=True)
class Session:
    """State of one charger connection. Create it once the upgrade is accepted and the backend link is open."""

    charger_id: str
    version: str  # negotiated OCPP version toward the charger ("1.6", "2.0.1", ...)
    backend: str  # name of the primary backend
    send_charger: Send
    send_backend: Send
    metrics: Metrics
    write: Callable[[Write], None]
    settings: SessionSettings = SessionSettings()
    log: Any = None
    remote: str = ""
    connected_at: float = field(default_factory=time.time)
    #: False while the backend link is down (reconnecting): charger CALLs wait in the queue
    link_up: bool = True
    up: Pending | None = None
    down: Pending | None = None
    up_queue: deque[_Queued] = field(default_factory=deque)
    down_queue: deque[_Queued] = field(default_factory=deque)
    frames_in: int = 0
    #: called with (charger id, "charger" | "backend", frame text) for each frame received; the demo prints them
    observe: Callable[[str, str, bytes], None] | None = None
    #: called with (action, the CALL, the primary's CALLRESULT or None) once the primary answered (or did not answer
    #: in time) a charger CALL, each as a frame (raw bytes, parsed later off the message path) or a payload dict:
    #: the mirrors' copies (gateway/mirror.py). None when the route has no mirror.
    mirror: Callable[[str, Raw | dict[str, Any], Raw | dict[str, Any] | None], None] | None = None
    #: while the route's one mirror is down: the mirror board's spool, to which the session appends its copies
    #: itself (four references: ``mirror_tag``, action, CALL and answer frames; no call), instead of ``mirror``
    mirror_spool: list[Any] | None = None
    mirror_tag: bytes = b""
    #: called with (direction, message type, action, unique id, payload) for each frame relayed, when a tap selects
    #: this charger's route (gateway/taps.py); None otherwise
    tap: Callable[[str, str, str, str, dict[str, Any]], None] | None = None
    last_seen: float = field(default_factory=time.time)
    _ids: int = 0
    _boot: dict[str, Any] | None = None
    _q_up: Any = field(init=False, repr=False, default=None)
    _q_down: Any = field(init=False, repr=False, default=None)
    _loop: asyncio.AbstractEventLoop = field(init=False, repr=False, default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        m = self.metrics
        self._q_up = m.queued_calls.labels("up")
        self._q_down = m.queued_calls.labels("down")
        self._loop = asyncio.get_running_loop()

    # ------------------------------------------------------------------ charger -> gateway

    def from_charger(self, text: bytes) -> None:
        """One text frame from the charger."""
        self.frames_in += 1
        if self.observe is not None:
            self.observe(self.charger_id, "charger", text)
        try:
            frame = parse_frame(text)
        except FrameError as e:
            self._refuse_frame(e, "charger")
            return
        if type(frame) is Call:
            self.metrics.message_counter("from_charger", "call", action_label(frame.action), self.backend).inc()
            if self.settings.validate and not self._valid_call(frame, "charger"):
                return
            if self.tap is not None:
                self.tap("from_charger", "call", frame.action, frame.unique_id, frame.payload)
            self._remember(frame)
            if self.up is None and self.link_up:
                self._send_up(frame)
            elif len(self.up_queue) >= self.settings.max_queued_calls:
                self.metrics.queue_overflows.labels("up").inc()
                self.send_charger(
                    call_error_text(frame.unique_id, _busy_code(self.version), "too many CALLs outstanding")
                )
            else:
                self.up_queue.append(_Queued(frame))
                self._q_up.inc()
            return
        # CALLRESULT / CALLERROR: must answer the outstanding down CALL
        kind = "callresult" if type(frame) is CallResult else "callerror"
        pending = self.down
        if pending is None or pending.unique_id != frame.unique_id:
            self.metrics.dropped_results.labels("from_charger", "unknown_id").inc()
            return
        self.down = None
        self.metrics.message_counter("from_charger", kind, action_label(pending.action), self.backend).inc()
        if self.tap is not None:
            self.tap("from_charger", kind, pending.action, frame.unique_id, answer_payload(frame))
        if self.settings.validate and type(frame) is CallResult:
            self._check_result(pending.action, frame.payload, "charger")
        self.metrics.rtt("down", action_label(pending.action), self.backend).observe(
            self._loop.time() - pending.started
        )
        if pending.waiter is not None:
            if not pending.waiter.done():
                if type(frame) is CallResult:
                    pending.waiter.set_result(AdminAnswer(result=frame.payload))
                else:
                    assert type(frame) is CallError
                    pending.waiter.set_result(AdminAnswer(error=(frame.code, frame.description, frame.details)))
        elif self.link_up:
            self.send_backend(frame.raw)
        else:
            self.metrics.dropped_results.labels("from_charger", "link_down").inc()
        self._pump_down()

    # ------------------------------------------------------------------ backend -> gateway

    def from_backend(self, text: bytes) -> None:
        """One text frame from the primary backend."""
        if self.observe is not None:
            self.observe(self.charger_id, "backend", text)
        try:
            frame = parse_frame(text)
        except FrameError as e:
            self._refuse_frame(e, "backend")
            return
        if type(frame) is Call:
            self.metrics.message_counter("from_backend", "call", action_label(frame.action), self.backend).inc()
            if self.settings.validate and not self._valid_call(frame, "backend"):
                return
            if self.tap is not None:
                self.tap("from_backend", "call", frame.action, frame.unique_id, frame.payload)
            if self.down is None:
                self._send_down(frame, None)
            elif len(self.down_queue) >= self.settings.max_queued_calls:
                self.metrics.queue_overflows.labels("down").inc()
                self.send_backend(
                    call_error_text(frame.unique_id, _busy_code(self.version), "too many CALLs outstanding")
                )
            else:
                self.down_queue.append(_Queued(frame))
                self._q_down.inc()
            return
        pending = self.up
        if pending is None or pending.unique_id != frame.unique_id:
            self.metrics.dropped_results.labels("from_backend", "unknown_id").inc()
            return
        self.up = None
        kind = "callresult" if type(frame) is CallResult else "callerror"
        action = action_label(pending.action)
        self.metrics.message_counter("from_backend", kind, action, self.backend).inc()
        if self.tap is not None:
            self.tap("from_backend", kind, pending.action, frame.unique_id, answer_payload(frame))
        self.metrics.rtt("up", action, self.backend).observe(self._loop.time() - pending.started)
        if self.settings.validate and type(frame) is CallResult:
            self._check_result(pending.action, frame.payload, "backend")
        if type(frame) is CallResult and pending.action == "BootNotification":
            self.write(
                Write(
                    "boot", self.charger_id, "", {"request": self._boot, "response": frame.payload, "at": time.time()}
                )
            )
        self.send_charger(frame.raw)
        spool = self.mirror_spool
        if spool is not None and type(pending.raw) is bytes and type(frame.raw) is bytes:
            spool += (self.mirror_tag, pending.action, pending.raw, frame.raw if type(frame) is CallResult else b"")
        elif self.mirror is not None and pending.raw is not None:
            self.mirror(pending.action, pending.raw, frame.raw if type(frame) is CallResult else None)
        self._pump_up()

    def set_mirror_spool(self, spool: list[Any] | None, tag: bytes) -> None:
        """See ``mirror_spool`` (called by the mirror feed when its mirror goes down and when it is back)."""
        self.mirror_spool, self.mirror_tag = spool, tag

    # ------------------------------------------------------------------ gateway-originated CALLs (admin API)

    def call_charger(self, action: str, payload: dict[str, Any]) -> asyncio.Future[AdminAnswer]:
        """Queue a CALL of the gateway's own to the charger; the future gets its answer.

        It takes its turn behind the backend's CALLs (one outstanding CALL toward the charger).
        Raises OverflowError when the queue is full.
        """
        self._ids += 1
        uid = f"gw-{self._ids}-{int(self.connected_at * 1000) % 100000000}"
        waiter: asyncio.Future[AdminAnswer] = self._loop.create_future()
        call = Call(uid, action, payload, call_text(uid, action, payload))
        if self.down is None:
            self._send_down(call, waiter)
        elif len(self.down_queue) >= self.settings.max_queued_calls:
            self.metrics.queue_overflows.labels("down").inc()
            raise OverflowError("too many CALLs queued for this charger")
        else:
            self.down_queue.append(_Queued(call, waiter))
            self._q_down.inc()
        return waiter

    # ------------------------------------------------------------------ link state

    def link_lost(self) -> None:
        """The backend link dropped: the outstanding up CALL will never be answered by it."""
        self.link_up = False
        if self.up is not None:
            self.metrics.dropped_results.labels("from_backend", "link_lost").inc()
            self.up = None

    def link_restored(self) -> None:
        """The link is back: flush what the charger sent meanwhile."""
        self.link_up = True
        self._pump_up()

    # ------------------------------------------------------------------ deadlines

    def expire(self, now: float) -> None:
        """Forget CALLs whose deadline passed (called about once a second by the gateway's sweeper)."""
        up = self.up
        if up is not None and up.deadline <= now:
            self.up = None
            self.metrics.call_timeouts.labels("up", self.backend).inc()
            if self.log is not None:
                self.log.warning("call_timed_out", direction="up", action=up.action, unique_id=up.unique_id)
            if self.mirror is not None and up.raw is not None:
                self.mirror(up.action, up.raw, None)
            self._pump_up()
        down = self.down
        if down is not None and down.deadline <= now:
            self.down = None
            self.metrics.call_timeouts.labels("down", self.backend).inc()
            if self.log is not None:
                self.log.warning("call_timed_out", direction="down", action=down.action, unique_id=down.unique_id)
            if down.waiter is not None and not down.waiter.done():
                down.waiter.set_exception(TimeoutError(f"{down.action}: no answer from the charger"))
            self._pump_down()

    def in_flight(self) -> dict[str, dict[str, Any]]:
        """What the admin API shows: the outstanding CALL's action and the queue depth, per direction."""
        return {
            "outstanding": {"up": self.up.action if self.up else None, "down": self.down.action if self.down else None},
            "queued": {"up": len(self.up_queue), "down": len(self.down_queue)},
        }

    def overdue(self, now: float) -> bool:
        """A CALL in flight has passed its deadline (the sweeper then calls :meth:`expire`)."""
        return (self.up is not None and self.up.deadline <= now) or (
            self.down is not None and self.down.deadline <= now
        )

    def idle(self) -> bool:
        """No CALL in flight or queued either way."""
        return self.up is None and self.down is None and not self.up_queue and not self.down_queue

    def close(self) -> None:
        """The session ended: fail the gateway's own waiters and zero the queue gauges."""
        for q in (self.up_queue, self.down_queue):
            for item in q:
                if item.waiter is not None and not item.waiter.done():
                    item.waiter.set_exception(ConnectionError("charger disconnected"))
        if self.down is not None and self.down.waiter is not None and not self.down.waiter.done():
            self.down.waiter.set_exception(ConnectionError("charger disconnected"))
        self._q_up.dec(len(self.up_queue))
        self._q_down.dec(len(self.down_queue))
        self.up_queue.clear()
        self.down_queue.clear()

    # ------------------------------------------------------------------ internals

    def _remember(self, call: Call) -> None:
        """State the next connection needs (write-behind, never awaited)."""
        action = call.action
        if action == "StatusNotification":
            p = call.payload
            # 1.6 keys statuses by connectorId; 2.0.1 by evseId/connectorId
            sub = str(p.get("connectorId")) if "evseId" not in p else f"{p.get('evseId')}/{p.get('connectorId')}"
            self.write(Write("status", self.charger_id, sub, dict(p)))

    def _send_up(self, call: Call) -> None:
        if call.action == "BootNotification":
            self._boot = call.payload  # stored with its answer (a queued second boot must not take its place)
        now = self._loop.time()
        self.up = Pending(call.unique_id, call.action, now, now + self.settings.call_timeout_s, None, call.raw)
        self.send_backend(call.raw)

    def _send_down(self, call: Call, waiter: asyncio.Future[AdminAnswer] | None) -> None:
        now = self._loop.time()
        self.down = Pending(call.unique_id, call.action, now, now + self.settings.call_timeout_s, waiter)
        self.send_charger(call.raw)

    def _pump_up(self) -> None:
        if self.up is None and self.link_up and self.up_queue:
            self._q_up.dec()
            self._send_up(self.up_queue.popleft().call)

    def _pump_down(self) -> None:
        if self.down is None and self.down_queue:
            self._q_down.dec()
            item = self.down_queue.popleft()
            self._send_down(item.call, item.waiter)

    def _valid_call(self, call: Call, side: str) -> bool:
        """Schema check of a CALL (``session.validate_schemas``); an invalid one is answered to its sender."""
        try:
            schemas.validate(self.version, call.action, "request", call.payload)
        except schemas.UnknownAction:
            return True  # not in this version's schemas: the other side answers NotImplemented
        except schemas.SchemaViolation as e:
            self.metrics.frame_errors.labels(side, "schema").inc()
            answer = call_error_text(
                call.unique_id, schemas.schema_error_code(e, self.version), f"{e.path}: {e.message}"
            )
            if side == "charger":
                self.send_charger(answer)
            elif self.link_up:
                self.send_backend(answer)
            return False
        return True

    def _check_result(self, action: str, payload: dict[str, Any], side: str) -> None:
        try:
            schemas.validate(self.version, action, "response", payload)
        except schemas.UnknownAction:
            pass
        except schemas.SchemaViolation as e:
            self.metrics.frame_errors.labels(side, "schema_result").inc()
            if self.log is not None:
                self.log.warning("invalid_callresult", side=side, action=action, path=e.path)

    def _refuse_frame(self, e: FrameError, side: str) -> None:
        self.metrics.frame_errors.labels(side, e.kind.value).inc()
        if self.log is not None:
            self.log.info("frame_refused", side=side, kind=e.kind.value, unique_id=e.unique_id)
        if e.unique_id is None or not e.is_call:
            return
        # The backend speaks the same version as the charger in pass-through.
        text = call_error_text(e.unique_id, e.code(self.version), e.detail)
        if side == "charger":
            self.send_charger(text)
        elif self.link_up:
            self.send_backend(text)


def answer_payload(frame: Call | CallResult | CallError) -> dict[str, Any]:
    """The payload of a frame as a tap event carries it (a CALLERROR's code, description and details)."""
    if type(frame) is CallError:
        return {"errorCode": frame.code, "errorDescription": frame.description, "errorDetails": frame.details}
    assert type(frame) is CallResult or type(frame) is Call
    return frame.payload


def _busy_code(version: str) -> str:
    """CALLERROR code for "one CALL at a time, and the queue is full"."""
    return "ProtocolError" if version.startswith("1.") else "RpcFrameworkError"
