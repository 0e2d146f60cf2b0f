"""A session whose charger and backend speak different OCPP versions: the translator's driver.

:class:`TranslatingSession` keeps the pass-through session's contract (one outstanding CALL per direction, answers
only to the party that asked, bounded queues, deadlines swept once a second) and adds what translation needs:

* A CALL from one side is *planned* by the translator (:class:`gateway.translate.base.Plan`) only when its lane is
  free, so that it sees the state left by the CALL before it (a StopTransaction is planned after the
  StartTransaction's answer has assigned the ids).
* The plan's CALLs go to the other side one at a time with the gateway's own unique ids (``g<n>.<session>``, the
  session part random per connection: OCPP-J forbids reusing a message id for the same charger on any connection,
  and ``n`` restarts at every connection and gateway restart); their answers
  feed ``finish`` whose result answers the origin under the origin's unique id. ``then_to_*`` CALLs are the
  gateway's own and queue behind on their lane; their answers are read and dropped (a CALLERROR is logged).
* Every CALL the gateway emits and every answer it gives is validated against the target version's schema first. An
  invalid one is a translation bug: the origin gets CALLERROR ``InternalError`` naming the action and schema path, it
  is logged and counted, and the invalid frame is never sent. An incoming CALL that fails its own schema gets the
  CALLERROR its version names for it (the translator only sees valid input).
* The translator's state is written to the store after every step that changes it (write-behind, coalesced per
  charger: see ``gateway/store/writer.py``); at connect the edge restores it before the charger is admitted.
  Decision: the state is queued for the store before the translated frame is sent, not awaited, so Redis latency
  never sits on the message path and a Redis outage never stops a charger. The window in which a crash of the
  process can lose a state change is the write-behind delay (one event-loop turn while Redis is up); a graceful
  stop flushes it.
* A timeout on a translated CALL is reported to the plan (``on_error(..., "Timeout", ...)``) so the translator can
  undo bookkeeping; the origin then gets no answer (it times out on its own, as in pass-through): the gateway never
  invents an answer.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gateway.metrics import Metrics
from gateway.ocpp import schemas
from gateway.ocpp.actions import action_label
from gateway.ocpp.errors import FrameError, normalise_code
from gateway.ocpp.frames import Call, CallError, CallResult, call_error_text, call_result_text, call_text, parse_frame
from gateway.session import AdminAnswer, Session, answer_payload
from gateway.store.base import Write
from gateway.translate.base import JsonDict, OutCall, Plan, Side, Translator

__all__ = ["TranslatingSession"]


@dataclass(slots=True)
class _Job:
    """One plan in progress on a lane (or a gateway-originated CALL with no origin)."""

    calls: list[OutCall]
    plan: Plan | None = None
    origin_id: str | None = None  # unique id of the origin's CALL; None: the gateway's own CALL
    action: str = ""  # the origin's action
    index: int = 0
    results: list[JsonDict] = field(default_factory=list)
    waiter: Any = None  # admin API future (down lane, untranslated)
    payload: JsonDict | None = None  # the origin's payload (mirror copies of charger CALLs)


@dataclass(slots=True)
class _Lane:
    """One direction: ``target`` is the side its CALLs go to."""

    target: Side
    job: _Job | None = None
    pending_id: str | None = None
    started: float = 0.0
    deadline: float = 0.0
    queue: deque[Call | _Job] = field(default_factory=deque)


@dataclass
class TranslatingSession(Session):
    """A :class:`Session` with a translator between the charger and its backend."""

    translator: Translator | None = None
    backend_version: str = ""

    def __post_init__(self) -> None:
        Session.__post_init__(self)
        assert self.translator is not None
        self._to_csms = _Lane("csms")
        self._to_charger = _Lane("charger")
        self._gid = 0
        self._gid_session = secrets.token_hex(4)  # message ids never repeat across connections (OCPP-J)
        m: Metrics = self.metrics
        self._local = m.translation_local_answers
        self._dropped = m.translation_dropped
        self._terrors = m.translation_errors

    # ------------------------------------------------------------------ frames in

    def from_charger(self, text: bytes) -> None:
        self.frames_in += 1
        self.last_seen = time.time()
        if self.observe is not None:
            self.observe(self.charger_id, "charger", text)
        try:
            frame = parse_frame(text)
        except FrameError as e:
            self._refuse_frame(e, "charger")
            return
        if type(frame) is Call:
            self.metrics.message_counter("from_charger", "call", action_label(frame.action), self.backend).inc()
            if self.tap is not None:
                self.tap("from_charger", "call", frame.action, frame.unique_id, frame.payload)
            self._remember(frame)
            self._enqueue(self._to_csms, frame)
        else:
            assert type(frame) is CallResult or type(frame) is CallError
            self._answer_in(self._to_charger, frame, "from_charger")

    def from_backend(self, text: bytes) -> None:
        if self.observe is not None:
            self.observe(self.charger_id, "backend", text)
        try:
            frame = parse_frame(text)
        except FrameError as e:
            self._refuse_frame(e, "backend")
            return
        if type(frame) is Call:
            self.metrics.message_counter("from_backend", "call", action_label(frame.action), self.backend).inc()
            if self.tap is not None:
                self.tap("from_backend", "call", frame.action, frame.unique_id, frame.payload)
            self._enqueue(self._to_charger, frame)
        else:
            assert type(frame) is CallResult or type(frame) is CallError
            self._answer_in(self._to_csms, frame, "from_backend")

    def call_charger(self, action: str, payload: dict[str, Any]) -> Any:
        """An admin CALL in the charger's own version: untranslated, on the lane toward the charger."""
        waiter = self._loop.create_future()
        job = _Job(calls=[OutCall(action, payload)], action=action, waiter=waiter)
        lane = self._to_charger
        if lane.job is not None and len(lane.queue) >= self.settings.max_queued_calls:
            self.metrics.queue_overflows.labels("down").inc()
            raise OverflowError("too many CALLs queued for this charger")
        lane.queue.append(job)
        self._pump(lane)
        return waiter

    # ------------------------------------------------------------------ lanes

    def _send(self, side: Side, data: bytes) -> None:
        if side == "charger":
            self.send_charger(data)
        elif self.link_up:
            self.send_backend(data)

    def _version(self, side: Side) -> str:
        return self.version if side == "charger" else self.backend_version

    def _enqueue(self, lane: _Lane, call: Call) -> None:
        if lane.job is None and not lane.queue and (lane.target == "charger" or self.link_up):
            self._start(lane, call)
        elif len(lane.queue) >= self.settings.max_queued_calls:
            self.metrics.queue_overflows.labels("up" if lane.target == "csms" else "down").inc()
            origin: Side = "charger" if lane.target == "csms" else "csms"
            code = "ProtocolError" if self._version(origin).startswith("1.") else "RpcFrameworkError"
            self._send(origin, call_error_text(call.unique_id, code, "too many CALLs outstanding"))
        else:
            lane.queue.append(call)

    def _pump(self, lane: _Lane) -> None:
        while lane.job is None and lane.queue and (lane.target == "charger" or self.link_up):
            item = lane.queue.popleft()
            if isinstance(item, _Job):
                lane.job = item
                self._step(lane)
            else:
                self._start(lane, item)

    def _start(self, lane: _Lane, call: Call) -> None:
        """Plan an origin CALL and start it (the lane is free)."""
        origin: Side = "charger" if lane.target == "csms" else "csms"
        src = self._version(origin)
        try:
            schemas.validate(src, call.action, "request", call.payload)
        except schemas.UnknownAction:
            pass  # the translator answers NotImplemented for actions it does not know
        except schemas.SchemaViolation as e:
            self.metrics.frame_errors.labels(origin, "schema").inc()
            self._send(
                origin, call_error_text(call.unique_id, schemas.schema_error_code(e, src), f"{e.path}: {e.message}")
            )
            return
        if origin == "charger" and call.action == "BootNotification":
            self._boot = call.payload  # the boot record stores the charger's own request with its answer
        tr = self.translator
        assert tr is not None
        plan = (
            tr.from_charger(call.action, call.payload)
            if origin == "charger"
            else tr.from_csms(call.action, call.payload)
        )
        self._persist()
        if plan.error is not None:
            code, desc = plan.error
            self._local.labels(action_label(call.action), plan.reason or "error").inc()
            self._send(origin, call_error_text(call.unique_id, normalise_code(code, src), desc))
            self._then(plan)
            return
        if plan.reply is not None:
            self._local.labels(action_label(call.action), plan.reason or "local").inc()
            self._answer_origin(origin, call.unique_id, call.action, plan.reply)
            self._then(plan)
            return
        lane.job = _Job(
            calls=list(plan.calls), plan=plan, origin_id=call.unique_id, action=call.action, payload=call.payload
        )
        self._step(lane)

    def _step(self, lane: _Lane) -> None:
        """Send the current job's next CALL to the lane's target."""
        job = lane.job
        assert job is not None
        call = job.calls[job.index]
        target = lane.target
        if job.waiter is None:  # admin CALLs are in the charger's version already and checked by the operator
            try:
                schemas.validate(self._version(target), call.action, "request", call.payload)
            except (schemas.SchemaViolation, schemas.UnknownAction) as e:
                self._translation_bug(lane, call.action, e)
                return
        self._gid += 1
        uid = f"g{self._gid}.{self._gid_session}"
        now = self._loop.time()
        lane.pending_id, lane.started, lane.deadline = uid, now, now + self.settings.call_timeout_s
        self._send(target, call_text(uid, call.action, call.payload))

    def _answer_in(self, lane: _Lane, frame: CallResult | CallError, direction: str) -> None:
        """A CALLRESULT/CALLERROR from the lane's target."""
        job = lane.job
        if job is None or frame.unique_id != lane.pending_id:
            self.metrics.dropped_results.labels(direction, "unknown_id").inc()
            return
        call = job.calls[job.index]
        kind = "callresult" if type(frame) is CallResult else "callerror"
        self.metrics.message_counter(direction, kind, action_label(call.action), self.backend).inc()
        self.metrics.rtt("up" if lane.target == "csms" else "down", action_label(call.action), self.backend).observe(
            self._loop.time() - lane.started
        )
        lane.pending_id = None
        if self.tap is not None:
            self.tap(direction, kind, call.action, frame.unique_id, answer_payload(frame))
        if job.waiter is not None:  # admin CALL
            if not job.waiter.done():
                if type(frame) is CallResult:
                    job.waiter.set_result(AdminAnswer(result=frame.payload))
                else:
                    assert type(frame) is CallError
                    job.waiter.set_result(AdminAnswer(error=(frame.code, frame.description, frame.details)))
            self._done(lane)
            return
        if type(frame) is CallResult:
            job.results.append(frame.payload)
            self._advance(lane)
        else:
            assert type(frame) is CallError
            self._failed(lane, frame.code, frame.description)

    def _advance(self, lane: _Lane) -> None:
        job = lane.job
        assert job is not None
        job.index += 1
        if job.index < len(job.calls):
            self._step(lane)
            return
        plan = job.plan
        if plan is None or job.origin_id is None or plan.finish is None:
            self._done(lane)  # the gateway's own CALL: its answer is read and dropped
            return
        answer = plan.finish(job.results)
        self._persist()
        origin: Side = "charger" if lane.target == "csms" else "csms"
        if job.action == "BootNotification" and origin == "charger":
            self.write(
                Write("boot", self.charger_id, "", {"request": self._boot, "response": answer, "at": time.time()})
            )
        self._answer_origin(origin, job.origin_id, job.action, answer)
        if self.mirror is not None and origin == "charger" and job.payload is not None:
            self.mirror(job.action, job.payload, answer)
        self._then(plan)
        self._done(lane)

    def _failed(self, lane: _Lane, code: str, description: str) -> None:
        job = lane.job
        assert job is not None
        plan = job.plan
        if plan is None or job.origin_id is None:
            if self.log is not None:
                self.log.warning("gateway_call_failed", action=job.calls[job.index].action, code=code)
            self._done(lane)
            return
        substitute = plan.on_error(job.index, code, description) if plan.on_error is not None else None
        self._persist()
        if substitute is not None:
            job.results.append(substitute)
            self._advance(lane)
            return
        origin: Side = "charger" if lane.target == "csms" else "csms"
        tr = self.translator
        assert tr is not None
        if code != "Timeout":
            self._send(origin, call_error_text(job.origin_id, tr.map_error(code, origin), description))
        self._done(lane)

    def _done(self, lane: _Lane) -> None:
        lane.job = None
        lane.pending_id = None
        self._drain_dropped()
        self._pump(lane)

    def _answer_origin(self, origin: Side, uid: str, action: str, payload: JsonDict) -> None:
        try:
            schemas.validate(self._version(origin), action, "response", payload)
        except (schemas.SchemaViolation, schemas.UnknownAction) as e:
            self._terrors.labels(action_label(action), "invalid_answer").inc()
            if self.log is not None:
                self.log.error("translation_invalid", action=action, kind="response", path=getattr(e, "path", ""))
            self._send(origin, call_error_text(uid, "InternalError", f"translation of {action} answer failed schema"))
            return
        self._send(origin, call_result_text(uid, payload))

    def _then(self, plan: Plan) -> None:
        for call in plan.then_to_csms:
            self._to_csms.queue.append(_Job(calls=[call], action=call.action))
        for call in plan.then_to_charger:
            self._to_charger.queue.append(_Job(calls=[call], action=call.action))
        if plan.then_to_csms:
            self._pump(self._to_csms)
        if plan.then_to_charger:
            self._pump(self._to_charger)

    def _translation_bug(self, lane: _Lane, action: str, e: Exception) -> None:
        """A translated CALL fails its target schema: answer the origin InternalError, send nothing."""
        job = lane.job
        assert job is not None
        path = getattr(e, "path", "")
        self._terrors.labels(action_label(action), "invalid_call").inc()
        if self.log is not None:
            self.log.error("translation_invalid", action=action, kind="request", path=path)
        if job.origin_id is not None:
            origin: Side = "charger" if lane.target == "csms" else "csms"
            self._send(
                origin,
                call_error_text(
                    job.origin_id,
                    "InternalError",
                    f"translation to {action} failed schema at {path}",
                    {"action": action, "path": str(path)},
                ),
            )
        self._done(lane)

    def _persist(self) -> None:
        tr = self.translator
        assert tr is not None
        self.write(Write("tx", self.charger_id, self.backend, tr.snapshot()))

    def _drain_dropped(self) -> None:
        take = getattr(self.translator, "take_dropped", None)
        if take is None:
            return
        for action, what in take():
            self._dropped.labels(action_label(action), what[:40]).inc()

    # ------------------------------------------------------------------ link, deadlines, lifecycle

    def link_lost(self) -> None:
        self.link_up = False
        lane = self._to_csms
        if lane.job is not None and lane.pending_id is not None:
            self.metrics.dropped_results.labels("from_backend", "link_lost").inc()
            lane.pending_id = None
            self._failed(lane, "Timeout", "backend link lost")

    def link_restored(self) -> None:
        self.link_up = True
        self._pump(self._to_csms)

    def expire(self, now: float) -> None:
        for lane in (self._to_csms, self._to_charger):
            job = lane.job
            if job is not None and lane.pending_id is not None and lane.deadline <= now:
                direction = "up" if lane.target == "csms" else "down"
                self.metrics.call_timeouts.labels(direction, self.backend).inc()
                if self.log is not None:
                    self.log.warning("call_timed_out", direction=direction, action=job.calls[job.index].action)
                lane.pending_id = None
                if job.waiter is not None:
                    if not job.waiter.done():
                        job.waiter.set_exception(TimeoutError("no answer from the charger"))
                    self._done(lane)
                else:
                    self._failed(lane, "Timeout", "no answer in time")

    def in_flight(self) -> dict[str, dict[str, Any]]:
        def current(lane: _Lane) -> str | None:
            job = lane.job
            return job.calls[job.index].action if job is not None and job.index < len(job.calls) else None

        return {
            "outstanding": {"up": current(self._to_csms), "down": current(self._to_charger)},
            "queued": {"up": len(self._to_csms.queue), "down": len(self._to_charger.queue)},
        }

    def overdue(self, now: float) -> bool:
        return any(
            lane.job is not None and lane.pending_id is not None and lane.deadline <= now
            for lane in (self._to_csms, self._to_charger)
        )

    def idle(self) -> bool:
        return all(lane.job is None and not lane.queue for lane in (self._to_csms, self._to_charger))

    def close(self) -> None:
        for lane in (self._to_charger,):
            jobs = [lane.job, *lane.queue]
            for job in jobs:
                if isinstance(job, _Job) and job.waiter is not None and not job.waiter.done():
                    job.waiter.set_exception(ConnectionError("charger disconnected"))
        for lane in (self._to_csms, self._to_charger):
            lane.queue.clear()
            lane.job = None
        self._persist()
