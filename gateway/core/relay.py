"""The translating relay: a session's CALLs planned by a translator, and each plan carried out on the lanes.

A translated session (:class:`gateway.core.session.Session` with a translator) puts each origin CALL on its lane
as a :class:`~gateway.core.jobs.Planned` job. When the job's turn comes, :meth:`Translating.start` validates the
CALL against the origin's schema and asks the translator for a plan: answered at once (``reply``/``error``), or
CALLs toward the other side that :class:`~gateway.core.plan.PlanRun` carries out one at a time with the gateway's
own unique ids. Every answer is validated against its sender's schema before the plan reads it, as the origin CALL
was: a translator only ever sees valid input. What the translation emits (its CALLs, the answer to the origin) is
checked for numbers out of range and encodability, and against the target's schema under
``session.validate_schemas`` (``check_emitted``; an invalid one is a translation bug: the origin gets
``InternalError``, it is logged and counted, and nothing is sent). That check is not on by default because it was
the largest single cost of a translated round trip (the 2.0.1 TransactionEvent schema: ~17 µs of ~90, py-spy over
``bench/translate_cost.py``), and the translators are pure functions of valid input: the test suite runs every
translated session with it on (``tests/unit/session_pair.py``) and checks every translated frame of the
translator tables against its schema (``tests/unit/translate_harness.py``), and the end-to-end tests put the
``ocpp`` package and ocpp-rpc (strict mode) behind translated sessions, which validate everything they receive.
The translator's state is persisted (write-behind) after every step that changes it, before the translated frame
leaves. A timeout is reported to the plan; the origin then gets no
answer (it times out on its own): the gateway never invents an answer. The plan's ``then_to_*`` CALLs queue on their
lanes as the gateway's own.

OCPP 2.1 (set-up C, a 2.1 charger): a SEND from the charger goes to the translator's ``send_from_charger``, which
wraps it into a CALL of the gateway's own toward the CSMS (bounded by the lane's queue; its answer is dropped) or
drops it (counted); it is never answered. An answer from a 2.1 party that fails its schema gets a CALLRESULTERROR
back (2.1 Part 2 FR.06), as well as the origin's ``InternalError``.

Numbers (:mod:`gateway.ocpp.numbers`). A translated frame is re-encoded, and orjson encodes no integer beyond 64 bits
(it raised out of the frame callback, and the charger was closed with 1011) and writes a non-finite float as
``null``. Decisions:

* **Where**: the origin CALL is checked in :meth:`Translating.start`, right after its schema check and before the
  translator sees it (nothing of it reaches the translator's state or the other side; the tap and the status
  record, taken when the frame arrives, hold the payload as orjson parsed it, which orjson encodes again); each
  answer of the other side with its schema check, before the plan reads it; each translated CALL and answer with its
  target-schema check, before it is encoded (the translation may compute a number: 10**k from a text, a connector
  from a configuration value). The encoders' own error (:data:`gateway.ocpp.frames.EncodeError`, for what the checks
  do not know: nesting, keys) is caught where the relay encodes, and only there: a translation bug is refused and
  counted ``unencodable``, never raised; there is no blanket ``except``.
* **Range**: signed 64-bit integers, and floats of magnitude below 2**63. The OCPP schemas bound none of these
  fields; the 1.6 ones (draft-04) already refuse an integer beyond 2**64 - 1 (orjson reads it as a float, which is
  no ``integer``; counted ``schema``), the 2.0.1 ones (draft-06) take that float for an integer, and neither stops
  2**63..2**64 - 1.
* **Answer and count**: a CALL out of range gets the origin version's ``PropertyConstraintViolation`` (the payload
  is well-formed and of the right types, but a value is outside what the receiver can take: the OCPP-J meaning of
  that code; FormationViolation would be wrong for valid JSON, TypeConstraintViolation for a number where a number
  is due), counted ``ocppgw_frame_errors_total{side, kind="number_out_of_range"}``; the lane is free for the next
  CALL. An answer out of range gives the origin ``InternalError`` (its own CALL was fine), counted the same way under
  the answering side. A translated CALL or answer out of range is the translation's: counted
  ``ocppgw_translation_errors_total{action, kind="number_out_of_range"}``, the origin gets
  ``PropertyConstraintViolation`` (a CALL) or ``InternalError`` (an answer). All bounded labels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import orjson

from gateway.core.jobs import Effects, Job, Own, Planned
from gateway.core.lane import FULL, START, Lane
from gateway.core.plan import PlanRun
from gateway.metrics import Metrics
from gateway.ocpp import schemas
from gateway.ocpp.actions import action_label
from gateway.ocpp.errors import normalise_code
from gateway.ocpp.frames import (
    Call,
    CallError,
    CallResult,
    EncodeError,
    Raw,
    Send,
    call_error_text,
    call_result_error_text,
    call_result_text,
    has_duplicate_keys,
)
from gateway.ocpp.jsontext import right_sized
from gateway.ocpp.numbers import out_of_range, out_of_range_in_frame
from gateway.ocpp.versions import OcppVersion
from gateway.store.base import Write
from gateway.translate.base import JsonDict, OutCall, Plan, Side, Translator

__all__ = ["OUT_OF_RANGE", "RelayHost", "Translating"]

#: the ``kind`` of ``ocppgw_frame_errors_total`` (a CALL or an answer of a peer) and of
#: ``ocppgw_translation_errors_total`` (a translation's result) for a number outside the range the gateway carries
OUT_OF_RANGE = "number_out_of_range"
_RANGE = "a number outside the signed 64-bit range the gateway carries"


class RelayHost(Protocol):
    """What the relay uses of its session (:class:`gateway.core.session.Session`)."""

    @property
    def charger_id(self) -> str: ...
    @property
    def backend(self) -> str: ...
    @property
    def version(self) -> OcppVersion: ...
    @property
    def backend_version(self) -> OcppVersion: ...
    @property
    def up(self) -> Lane[Job]: ...
    @property
    def down(self) -> Lane[Job]: ...
    @property
    def fx(self) -> Effects: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def log(self) -> Any: ...
    @property
    def mirror(self) -> Callable[[str, Raw | JsonDict, Raw | JsonDict | None], None] | None: ...

    def _note_boot(self, request: JsonDict) -> None: ...
    def _violated(
        self, side: str, message: str, action: str, e: schemas.SchemaViolation, payload: JsonDict
    ) -> None: ...
    def _record_boot(self, response: JsonDict) -> None: ...
    def _to_origin(self, lane: Lane[Job], data: bytes) -> None: ...
    def _send_backend(self, data: Raw) -> None: ...
    def _send_own(self, lane: Lane[Job], action: str, payload: JsonDict, uid: str | None = None) -> None: ...
    def _start(self, lane: Lane[Job], job: Job) -> bool: ...
    def _next(self, lane: Lane[Job]) -> None: ...
    def _target_version(self, lane: Lane[Job]) -> str: ...


class Translating:
    """The translated half of one session (``s``): its plans and their answers."""

    __slots__ = (
        "_dropped", "_encode", "_last_state", "_local", "_terrors", "check_emitted", "last_answered", "s", "translator",
    )  # fmt: skip

    def __init__(self, session: RelayHost, translator: Translator, *, check_emitted: bool = False) -> None:
        self.s = session
        self.translator = translator
        #: check every translated CALL and answer against the target's schema before it leaves (``session.
        #: validate_schemas``; the tests' sessions always do): see the module docstring
        self.check_emitted = check_emitted
        m = session.metrics
        self._local = m.translation_local_answers
        self._dropped = m.translation_dropped
        self._terrors = m.translation_errors
        #: per lane (up, down): (unique id, action) of the origin CALL answered last, for a CALLRESULTERROR (2.1)
        self.last_answered: dict[bool, tuple[str, str]] = {}
        #: the translator's state as JSON text: its own encoder when it has one (``snapshot_json``: set-up A
        #: re-encodes only the transaction records that changed), else its snapshot through orjson
        encode: Callable[[], bytes] | None = getattr(translator, "snapshot_json", None)
        self._encode: Callable[[], bytes] = encode or (lambda: orjson.dumps(translator.snapshot()))
        #: the text last handed to the store (write-behind): a step that changed nothing is not written again
        self._last_state: bytes | None = None

    def start(self, lane: Lane[Job], job: Planned) -> bool:
        """Plan an origin CALL (its turn came) and send the plan's first CALL; a plan under way (its CALL lost with
        the link, ``Session.resend_lost``) sends its current CALL again, under the same unique id."""
        if job.run is not None:
            return self._step(lane, job)
        s = self.s
        call = job.origin
        from_charger = lane is s.up
        origin = "charger" if from_charger else "backend"
        src = s.version if from_charger else s.backend_version
        try:
            schemas.validate(src, call.action, "request", call.payload)
        except schemas.UnknownAction:
            pass  # the translator answers NotImplemented for actions it does not know
        except schemas.SchemaViolation as e:
            s.metrics.frame_errors.labels(origin, "schema").inc()
            s._violated(origin, "call", call.action, e, call.payload)
            s._to_origin(
                lane, call_error_text(call.unique_id, schemas.schema_error_code(e, src), f"{e.path}: {e.message}")
            )
            return False
        path = out_of_range_in_frame(call.raw, call.payload)
        if path is not None:  # before the translator sees it: nothing of it is kept or sent
            s.metrics.frame_errors.labels(origin, OUT_OF_RANGE).inc()
            code = normalise_code("PropertyConstraintViolation", src)
            s._to_origin(lane, call_error_text(call.unique_id, code, f"{path}: {_RANGE}"))
            return False
        if from_charger and call.action == "BootNotification":
            s._note_boot(call.payload)  # the boot record stores the charger's own request with its answer
        tr = self.translator
        assert tr is not None
        plan = tr.from_charger(call.action, call.payload) if from_charger else tr.from_csms(call.action, call.payload)
        self.persist()
        if plan.error is not None:
            code, desc = plan.error
            self._local.labels(action_label(call.action), plan.reason or "error").inc()
            s._to_origin(lane, call_error_text(call.unique_id, normalise_code(code, src), desc))
            self._then(plan)
            return False
        if plan.reply is not None:
            self._local.labels(action_label(call.action), plan.reason or "local").inc()
            self._answer_origin(lane, call, plan.reply)
            self._then(plan)
            return False
        job.run = PlanRun(plan)
        return self._step(lane, job)

    def _step(self, lane: Lane[Job], job: Planned) -> bool:
        """Send the plan's next CALL (checked against the target's schema first)."""
        s = self.s
        run = job.run
        assert run is not None
        call = run.call
        try:
            self.check(s._target_version(lane), call.action, "request", call.payload)
        except (schemas.SchemaViolation, schemas.UnknownAction) as e:
            path = getattr(e, "path", "")
            self.invalid(call.action, "request", e)
            s._to_origin(
                lane,
                call_error_text(
                    job.origin.unique_id, "InternalError", f"translation to {call.action} failed schema at {path}",
                    {"action": call.action, "path": str(path)},
                ),
            )  # fmt: skip
            return False
        path = out_of_range(call.payload)
        if path is not None:  # the translation computed a number no peer of the gateway gets
            self.invalid(call.action, "request", None, OUT_OF_RANGE, path)
            code = normalise_code("PropertyConstraintViolation", s.version if lane is s.up else s.backend_version)
            s._to_origin(
                lane, call_error_text(job.origin.unique_id, code, f"translation to {call.action}: {path}: {_RANGE}")
            )
            return False
        resend, job.resend = job.resend, None
        try:
            s._send_own(lane, call.action, call.payload, resend)
        except EncodeError as e:  # a translation bug the checks above do not know: refused, never raised
            self.invalid(call.action, "request", e, "unencodable")
            s._to_origin(
                lane, call_error_text(job.origin.unique_id, "InternalError", f"translation to {call.action} failed")
            )
            return False
        return True

    def answered(self, lane: Lane[Job], job: Planned, frame: CallResult | CallError) -> None:
        s = self.s
        run = job.run
        assert run is not None
        if type(frame) is CallResult and has_duplicate_keys(frame):  # counted; the plan reads orjson's last value
            s.metrics.frame_errors.labels("backend" if lane is s.up else "charger", "duplicate_keys_result").inc()
        problem = self._answer_problem(lane, run.call.action, frame) if type(frame) is CallResult else None
        if problem is not None:
            self.persist()
            s._to_origin(
                lane,
                call_error_text(
                    job.origin.unique_id, "InternalError", f"the {run.call.action} answer {problem}: not translated"
                ),
            )
            s._next(lane)
            return
        if type(frame) is CallResult:
            more: bool | None = run.answered(frame.payload)
        else:
            assert type(frame) is CallError
            more = run.failed(frame.code, frame.description)
            self.persist()
            if more is None:
                tr = self.translator
                assert tr is not None
                origin: Side = "charger" if lane is s.up else "csms"
                s._to_origin(
                    lane, call_error_text(job.origin.unique_id, tr.map_error(frame.code, origin), frame.description)
                )
                s._next(lane)
                return
        if more:
            if not self._step(lane, job):
                s._next(lane)
            return
        self._finished(lane, job)

    def _answer_problem(self, lane: Lane[Job], action: str, frame: CallResult) -> str | None:
        """A CALLRESULT to a translated CALL, checked against its sender's schema and for numbers out of range before
        the plan reads it (the translator only ever sees valid input): None, or what is wrong with it (counted and
        logged); a 2.1 sender gets a CALLRESULTERROR for an answer that fails its schema (2.1 Part 2 FR.06)."""
        s = self.s
        version = s._target_version(lane)
        side = "backend" if lane is s.up else "charger"
        try:
            schemas.validate(version, action, "response", frame.payload)
        except schemas.UnknownAction:
            pass
        except schemas.SchemaViolation as e:
            s.metrics.frame_errors.labels(side, "schema_result").inc()
            s._violated(side, "callresult", action, e, frame.payload)
            if s.log is not None:
                s.log.warning("invalid_callresult", side=side, action=action, path=e.path)
            if version == "2.1":
                refusal = call_result_error_text(
                    frame.unique_id, schemas.schema_error_code(e, version), f"{e.path}: {e.message}"
                )
                if lane is s.up:
                    s._send_backend(refusal)
                else:
                    s.fx.to_charger(refusal)
            return "failed its schema"
        path = out_of_range_in_frame(frame.raw, frame.payload)
        if path is not None:
            s.metrics.frame_errors.labels(side, OUT_OF_RANGE).inc()
            if s.log is not None:
                s.log.warning("callresult_out_of_range", side=side, action=action, path=path)
            return f"carries {_RANGE} at {path}"
        return None

    def send(self, frame: Send, side: str) -> None:
        """A SEND (OCPP 2.1) from ``side``, already checked against 2.1's schema by the session: wrapped or dropped
        as the translator says (``send_from_charger``: an :class:`OutCall` toward the CSMS, or None). Never
        answered."""
        s = self.s
        action = frame.action
        hook = getattr(self.translator, "send_from_charger", None) if side == "charger" else None
        out: OutCall | None = hook(action, frame.payload) if hook is not None else None
        self.persist()
        if out is None:
            if hook is None:
                self._dropped.labels(action_label(action), "send").inc()
            self.count_dropped()
            return
        self.count_dropped()
        lane = s.up if side == "charger" else s.down
        job = Own(out.action, out.payload, None)
        offered = lane.offer(job)
        if offered == START:
            if not s._start(lane, job):
                s._next(lane)
        elif offered == FULL:
            s.metrics.queue_overflows.labels("up" if lane is s.up else "down").inc()
            self._dropped.labels(action_label(action), "send_queue_full").inc()

    def count_dropped_frame(self, action: str, what: str) -> None:
        """A frame the other side's version cannot carry (a CALLRESULTERROR toward 2.0.1), counted as dropped."""
        self._dropped.labels(action_label(action), what).inc()

    def failed(self, lane: Lane[Job], job: Planned, code: str, description: str) -> None:
        """No answer (timeout, link lost): the plan may substitute one; else the origin gets none."""
        s = self.s
        run = job.run
        more = run.failed(code, description) if run is not None else None
        self.persist()
        if more is None:
            s._next(lane)
        elif more:
            if not self._step(lane, job):
                s._next(lane)
        else:
            self._finished(lane, job)

    def _finished(self, lane: Lane[Job], job: Planned) -> None:
        s = self.s
        run = job.run
        assert run is not None
        answer = run.finish()
        self.persist()
        call = job.origin
        if lane is s.up:
            if call.action == "BootNotification":
                s._record_boot(answer)
            self._answer_origin(lane, call, answer)
            if s.mirror is not None:
                s.mirror(call.action, call.payload, answer)
        else:
            self._answer_origin(lane, call, answer)
        self._then(run.plan)
        s._next(lane)

    def _answer_origin(self, lane: Lane[Job], call: Call, payload: JsonDict) -> None:
        s = self.s
        version = s.version if lane is s.up else s.backend_version
        try:
            self.check(version, call.action, "response", payload)
        except (schemas.SchemaViolation, schemas.UnknownAction) as e:
            self.invalid(call.action, "response", e)
            s._to_origin(
                lane,
                call_error_text(call.unique_id, "InternalError", f"translation of {call.action} answer failed schema"),
            )
            return
        path = out_of_range(payload)
        if path is not None:
            self.invalid(call.action, "response", None, OUT_OF_RANGE, path)
        else:
            try:
                s._to_origin(lane, call_result_text(call.unique_id, payload))
                self.last_answered[lane is s.up] = (call.unique_id, call.action)
                return
            except EncodeError as e:  # a translation bug the checks above do not know: refused, never raised
                self.invalid(call.action, "response", e, "unencodable")
        s._to_origin(
            lane, call_error_text(call.unique_id, "InternalError", f"translation of {call.action} answer failed")
        )

    def _then(self, plan: Plan) -> None:
        """The gateway's own CALLs a plan asks for after the origin's answer, each on its lane's queue."""
        s = self.s
        for calls, lane in ((plan.then_to_csms, s.up), (plan.then_to_charger, s.down)):
            for c in calls:
                self._push_own(lane, c)

    def _push_own(self, lane: Lane[Job], call: OutCall) -> None:
        s = self.s
        job = lane.push(Own(call.action, call.payload, None))
        if job is not None and not s._start(lane, job):
            s._next(lane)

    def check(self, version: str, action: str, kind: schemas.Kind, payload: JsonDict) -> None:
        """A translated CALL or answer about to leave: checked against the target's schema when
        ``check_emitted``, else only that the target version has the message at all (raises
        :class:`~gateway.ocpp.schemas.UnknownAction`, as the schema check does)."""
        if self.check_emitted:
            schemas.validate(version, action, kind, payload)
        elif not schemas.has_schema(version, action, kind):
            raise schemas.UnknownAction(version, action, kind)

    def invalid(self, action: str, kind: str, e: Exception | None, what: str = "", path: str = "") -> None:
        """A translated CALL (``kind`` request) or answer that cannot go out: counted ``invalid_call`` /
        ``invalid_answer`` (it failed the target's schema) or ``what``, and logged."""
        s = self.s
        label = what or f"invalid_{'call' if kind == 'request' else 'answer'}"
        self._terrors.labels(action_label(action), label).inc()
        if s.log is not None:
            s.log.error("translation_invalid", action=action, kind=kind, why=label, path=path or getattr(e, "path", ""))

    def persist(self) -> None:
        """The translator's state to the store (write-behind), as its JSON text, when it differs from the text last
        written: a step that changed nothing (a Heartbeat; the answer to a MeterValues) writes nothing. Comparing
        the text, not the snapshot, is what makes this safe for every translator: a snapshot may share mutable
        members with the state (set-up B's records share their lists), its text cannot. What orjson cannot write
        goes to the store as a dict, as before (the memory store copies it; Redis refuses it). The text kept (here,
        and by the memory store, which keeps the same object) is right-sized: orjson's buffer is ~4 kB for any text,
        32 kB for the 22 kB of a state with the shared load's 32 transactions."""
        s = self.s
        try:
            text = self._encode()
        except EncodeError:
            self._last_state = None
            s.fx.persist(Write("tx", s.charger_id, s.backend, self.translator.snapshot()))
            return
        if text != self._last_state:
            self._last_state = text = right_sized(text)
            s.fx.persist(Write("tx", s.charger_id, s.backend, text))

    def count_dropped(self) -> None:
        take = getattr(self.translator, "take_dropped", None)
        if take is None:
            return
        for action, what in take():
            self._dropped.labels(action_label(action), what[:40]).inc()
