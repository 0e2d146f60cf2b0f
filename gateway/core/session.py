"""One connected charger: the OCPP-J bookkeeping between the charger and its primary backend. Sans-I/O.

Frames and ticks in, effects out. A driver (the hub's connection, :mod:`gateway.app.hub`; a recorder in the unit
tests, ``tests/unit/session_pair.py``) feeds the session and carries out what it asks for:

* in: :meth:`Session.from_charger` and :meth:`Session.from_backend` (one text frame each, as received),
  :meth:`Session.expire` (the sweeper's tick, with the loop clock), :meth:`Session.call_charger` (a CALL of the
  gateway's own: admin API, a mirror's allowed CALL), :meth:`Session.link_lost` / :meth:`Session.link_restored`,
  :meth:`Session.hold` / :meth:`Session.release` (a cutover), :meth:`Session.close`;
* out: the :class:`Effects` it was given (send to the charger, send to the backend, persist a state write, fail a
  side's connection, a new Basic auth password the charger accepted, a password the CSMS sets under the
  ``terminate`` rotation policy), the receivers of admin CALLs, and the optional hooks ``mirror``/``mirror_spool``
  (copies to mirror feeds), ``tap``, ``observe``, ``on_boot`` and ``quirks`` (a charger's quirk profile:
  gateway/core/quirks.py). Counting goes straight to pre-bound Prometheus children.

Everything here is synchronous: a frame is handled to the end within the transport's read callback, with no task
per message. No asyncio, no sockets, no store: the clocks are given (``clock``: the loop's, for deadlines and
round-trip times; ``wall``: unix time, for the boot record).

Rules it enforces (OCPP-J: one outstanding CALL per direction), all through two :class:`~gateway.core.lane.Lane`:

* ``up`` carries CALLs to the backend (the charger's, and the gateway's own), ``down`` CALLs to the charger (the
  backend's, the admin API's, a mirror's allowed ones). Each has at most one CALL outstanding and a bounded queue
  behind it; a full queue answers the sender's version's "busy" CALLERROR (ProtocolError / RpcFrameworkError).
* An answer (CALLRESULT/CALLERROR) goes only to the party whose CALL has that unique id. A late or unknown answer
  is dropped and counted, never delivered to the wrong party. A CALL unanswered by its deadline is forgotten.
* A malformed frame gets the CALLERROR its sender's version names, when its unique id can be read; nothing
  malformed reaches the other side. The session lives on, except after a text frame that is not UTF-8: that
  side's connection fails with 1007 (the ``fail`` effect; RFC 6455 §8.1).
* Pass-through forwards the original text unchanged, with the sender's unique id; a frame a quirk rule repaired
  (``quirks``, before the schema check and the translation) is serialised anew.
* A CALL with a key given twice in one object is refused with its sender's format error where the gateway reads
  the payload (validation, translation: every CALL; otherwise BootNotification, StatusNotification and the CALLs
  that set the Basic auth password); a CALLRESULT it reads with one is counted and forwarded. Everything else is
  forwarded as it came (the check costs too much for every frame: see :func:`~gateway.ocpp.frames.has_duplicate_keys`).
* Translation (``translator`` set: charger and backend speak different versions): a CALL is *planned* by the
  translator only when its turn on the lane comes, so that it sees the state the CALL before it left (a
  StopTransaction is planned after the StartTransaction's answer assigned the ids). The plan's CALLs
  (:class:`~gateway.core.plan.PlanRun`) go to the other side one at a time with the gateway's own unique ids
  (``g<n>.<session>``: random per connection, since OCPP-J forbids reusing a message id for the same charger);
  their answers feed the plan, whose result answers the origin under the origin's unique id. What comes in (the
  origin's CALL, every answer to a translated CALL) is always validated against its sender's schema, so that a
  translator only ever sees valid input. Every translated CALL and answer is checked for numbers out of range and
  encodability, and, under ``session.validate_schemas`` (which every translated session of the test suite runs
  with), against the target version's schema too; an invalid one is a translation bug: the origin gets
  ``InternalError``, it is logged and counted, and the invalid frame is never sent. The translator's state is
  persisted (write-behind) after every step that changes it, before the translated frame leaves. A
  timeout is reported to the plan, and the origin then gets no answer (it times out on its own): the gateway never
  invents an answer. A number outside the signed 64-bit range, in a CALL, an answer or a translation, is refused
  the same way (``PropertyConstraintViolation`` for a CALL; see :mod:`gateway.core.relay`): no input raises out of
  a frame callback.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from gateway.core.jobs import AdminAnswer, Effects, Forward, Job, Own, Planned, Receiver, Send, SessionSettings
from gateway.core.lane import FULL, START, Lane
from gateway.core.quirks import SessionQuirks
from gateway.core.relay import OUT_OF_RANGE, Translating
from gateway.core.rotation import ROTATION_ACTIONS, intercept_csms_call, rotation_accepted, rotation_offer
from gateway.metrics import Metrics
from gateway.ocpp import schemas
from gateway.ocpp.errors import ErrorKind, FrameError, busy_code, code_for
from gateway.ocpp.frames import (
    Call,
    CallError,
    CallResult,
    CallResultError,
    EncodeError,
    Raw,
    call_error_text,
    call_result_text,
    call_text,
    has_duplicate_keys,
    parse_frame,
)
from gateway.ocpp.frames import Send as SendFrame
from gateway.ocpp.numbers import out_of_range
from gateway.ocpp.versions import OcppVersion
from gateway.store.base import Write
from gateway.translate.base import JsonDict, Translator

__all__ = ["AdminAnswer", "Effects", "Receiver", "Session", "SessionSettings", "answer_payload"]

#: charger CALLs whose payload the gateway stores (the boot record, the last status per connector)
_STORED_CALLS = frozenset({"BootNotification", "StatusNotification"})


class Session:
    """State of one charger connection. Create it once the upgrade is accepted and the backend link is open."""

    __slots__ = (
        "_boot",
        "_ids",
        "_on_quiet",
        "_rotation",
        "_session_id",
        "_stale",
        "backend",
        "backend_version",
        "charger_id",
        "clock",
        "connected_at",
        "down",
        "frames_in",
        "fx",
        "held",
        "link_up",
        "log",
        "metrics",
        "mirror",
        "mirror_spool",
        "mirror_tag",
        "observe",
        "on_boot",
        "quirks",
        "relay",
        "remote",
        "resend_lost",
        "settings",
        "strict",
        "tap",
        "translator",
        "up",
        "validate",
        "version",
        "wall",
    )  # fmt: skip

    def __init__(
        self,
        *,
        charger_id: str,
        version: OcppVersion,
        backend: str,
        effects: Effects,
        metrics: Metrics,
        clock: Callable[[], float],
        wall: Callable[[], float],
        settings: SessionSettings | None = None,
        translator: Translator | None = None,
        backend_version: OcppVersion | None = None,
        log: Any = None,
        remote: str = "",
        session_id: str | None = None,
    ) -> None:
        self.charger_id = charger_id
        #: the OCPP version toward the charger, and toward the backend (the same in pass-through)
        self.version = version
        self.backend_version: OcppVersion = backend_version or version
        self.backend = backend
        self.fx = effects
        self.metrics = metrics
        self.clock = clock
        self.wall = wall
        settings = self.settings = settings or SessionSettings()
        self.translator = translator
        # translated sessions always validate; "2.0" has no schemas (gateway/ocpp/schemas.py): never validated
        self.validate = settings.validate and translator is None and schemas.validates(version)
        #: the session reads every payload (schema validation, translation): every CALL is checked for duplicate
        #: keys; otherwise only those whose payload it reads itself (stored, password rotation)
        self.strict = settings.validate or translator is not None
        self.log = log
        self.remote = remote
        self.connected_at = wall()
        self.up: Lane[Job] = Lane(settings.max_queued_calls, settings.call_timeout_s)
        self.down: Lane[Job] = Lane(settings.max_queued_calls, settings.call_timeout_s)
        #: False while the backend link is down (charger CALLs wait in the up lane's queue)
        self.link_up = True
        #: a cutover holds the up lane until in-flight CALLs are answered (``_on_quiet`` then hears of it)
        self.held = False
        #: the charger CALL whose answer the lost link took away (forwarded as it is, or a translation plan's current
        #: CALL) is sent again when the link is back, instead of being forgotten (a ride-through route: its journal
        #: then holds it; the CSMS may see it twice, under the same unique id)
        self.resend_lost = False
        self._on_quiet: Callable[[], None] | None = None
        self.frames_in = 0
        #: called with (charger id, "charger" | "backend", frame text) for each frame received (the demo's live view)
        self.observe: Callable[[str, str, bytes], None] | None = None
        #: called with (action, the CALL, the primary's CALLRESULT or None) once the primary answered (or did not
        #: answer in time) a charger CALL, each as a frame (raw bytes, parsed later off the message path) or as a
        #: payload dict (translated sessions): the mirrors' copies (gateway/fanout/mirror.py). None: no mirror.
        self.mirror: Callable[[str, Raw | JsonDict, Raw | JsonDict | None], None] | None = None
        #: while the route's one mirror is down (pass-through): the mirror board's spool, to which the session
        #: appends its copies itself (four references: ``mirror_tag``, action, CALL and answer frames; no call)
        self.mirror_spool: list[Any] | None = None
        self.mirror_tag = b""
        #: called with (direction, message type, action, unique id, payload) for each frame relayed, when a tap
        #: selects this charger's route (gateway/fanout/taps.py); None otherwise
        self.tap: Callable[[str, str, str, str, JsonDict], None] | None = None
        #: called with each BootNotification request of the charger as it came, before any repair (the app layer
        #: chooses the charger's quirk profile again, and may set ``quirks``); None when no profile could match
        self.on_boot: Callable[[JsonDict], None] | None = None
        #: the charger's quirk profile and compliance counting (gateway/core/quirks.py); None: nothing per frame
        self.quirks: SessionQuirks | None = None
        self._boot: JsonDict | None = None
        self._ids = 0
        self._session_id = session_id or secrets.token_hex(4)  # message ids never repeat across connections
        #: (unique id, password) of a CALL to the charger that sets its Basic auth password, until answered
        self._rotation: tuple[str, str] | None = None
        #: a CALL of the previous primary still with the charger when a cutover switched: its answer is dropped
        self._stale: Job | None = None
        #: the translated half (None in pass-through): plans and their answers (gateway/core/relay.py)
        self.relay = Translating(self, translator, check_emitted=settings.validate) if translator is not None else None

    # ------------------------------------------------------------------ frames in

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
            action = frame.action
            if action == "BootNotification" and self.on_boot is not None:
                self.on_boot(frame.payload)
            if self.quirks is not None and self.quirks.call("from_charger", action, frame.payload):
                frame = _repaired_call(frame)
            self.metrics.count_message("from_charger", "call", action, self.backend)
            if self.strict and not self._checked_call(frame, "charger"):
                return
            if action in _STORED_CALLS:
                if not self.strict and not self._unique_keys(frame, "charger"):
                    return
                if action == "StatusNotification":
                    self._remember_status(frame.payload)
            if self.tap is not None:
                self.tap("from_charger", "call", action, frame.unique_id, frame.payload)
            self._offer(self.up, frame)
            return
        if type(frame) is CallResult or type(frame) is CallError:
            self._answered(self.down, frame, "from_charger")
            return
        assert type(frame) is SendFrame or type(frame) is CallResultError
        self._v21_frame(frame, "charger")

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
            action = frame.action
            if self.quirks is not None and self.quirks.call("from_backend", action, frame.payload):
                frame = _repaired_call(frame)
            self.metrics.count_message("from_backend", "call", action, self.backend)
            if self.strict and not self._checked_call(frame, "backend"):
                return
            if action in ROTATION_ACTIONS:  # read for the password it may set
                if not self.strict and not self._unique_keys(frame, "backend"):
                    return
                if self.fx.rotate_upstream is not None and self._rotated_upstream(frame):
                    return
            if self.tap is not None:
                self.tap("from_backend", "call", action, frame.unique_id, frame.payload)
            self._offer(self.down, frame)
            return
        if type(frame) is CallResult or type(frame) is CallError:
            self._answered(self.up, frame, "from_backend")
            return
        assert type(frame) is SendFrame or type(frame) is CallResultError
        self._v21_frame(frame, "backend")

    # ------------------------------------------------------------------ OCPP 2.1: SEND, CALLRESULTERROR

    def _v21_frame(self, frame: SendFrame | CallResultError, side: str) -> None:
        """A SEND or CALLRESULTERROR from ``side``. Versions before 2.1 have neither: refused as an unknown message
        type, as before 2.1 existed (2.0.1 MessageTypeNotSupported, 1.6 ProtocolError). Neither is ever answered,
        and neither takes a turn on a lane."""
        version = self.version if side == "charger" else self.backend_version
        if version != "2.1":
            kind = "SEND" if type(frame) is SendFrame else "CALLRESULTERROR"
            detail = f"{kind} is not an OCPP {version} message type"
            self._refuse_frame(FrameError(ErrorKind.UNKNOWN_MESSAGE_TYPE, detail, frame.unique_id), side)
            return
        if type(frame) is SendFrame:
            self._send_frame(frame, side)
        else:
            assert type(frame) is CallResultError
            self._call_result_error(frame, side)

    def _send_frame(self, frame: SendFrame, side: str) -> None:
        """A SEND: relayed at once, byte for byte, to the other side (pass-through), or as the translator says. It
        gets no answer, whatever happens to it; an invalid one (``validate_schemas``) is dropped and counted."""
        direction = "from_" + side
        action = frame.action
        self.metrics.count_message(direction, "send", action, self.backend)
        if self.validate or self.relay is not None:  # translated sessions always validate
            try:
                schemas.validate("2.1", action, "request", frame.payload)
            except schemas.UnknownAction:
                pass
            except schemas.SchemaViolation as e:
                self.metrics.frame_errors.labels(side, "schema").inc()
                if self.log is not None:
                    self.log.warning("invalid_send", side=side, action=action, path=e.path)
                return
        if self.tap is not None:
            self.tap(direction, "send", action, frame.unique_id, frame.payload)
        if self.relay is not None:
            self.relay.send(frame, side)
        elif side == "backend":
            self.fx.to_charger(frame.raw)
        elif self.link_up:
            self.fx.to_backend(frame.raw)
        else:
            self.metrics.dropped_results.labels(direction, "link_down").inc()

    def _call_result_error(self, frame: CallResultError, side: str) -> None:
        """A CALLRESULTERROR: ``side`` could not process the CALLRESULT with that unique id, which answered the last
        CALL it sent (the charger's on ``up``, the backend's on ``down``). In pass-through that answer came from the
        other side, which gets the CALLRESULTERROR as it is; in a translated session the answer was the gateway's
        translation of the last origin CALL answered on that lane, and the other side (2.0.1) has no such frame:
        logged and counted dropped. An id that is not the last answered CALL of that lane cannot be placed: dropped
        and counted (``unknown_id``). Never answered."""
        direction = "from_" + side
        lane = self.up if side == "charger" else self.down
        uid = frame.unique_id
        if self.relay is not None:  # the origin's id, not the gateway's, is what the refusing side knows
            last = self.relay.last_answered.get(lane is self.up)
            known = last is not None and last[0] == uid
            action = last[1] if last is not None and known else "other"
        else:
            known = uid == lane.last_id and lane.unique_id != uid
            action = lane.action if known else "other"
        self.metrics.count_message(direction, "callresulterror", action, self.backend)
        if self.log is not None:
            self.log.warning("callresult_refused", side=side, action=action, unique_id=uid, code=frame.code)
        if not known:
            self.metrics.dropped_results.labels(direction, "unknown_id").inc()
            return
        if self.tap is not None:
            self.tap(direction, "callresulterror", action, uid, answer_payload(frame))
        if self.relay is not None:
            self.relay.count_dropped_frame(action, "callresulterror")
        elif side == "backend":
            self.fx.to_charger(frame.raw)
        elif self.link_up:
            self.fx.to_backend(frame.raw)
        else:
            self.metrics.dropped_results.labels(direction, "link_down").inc()

    # ------------------------------------------------------------------ gateway-originated CALLs

    def call_charger(self, action: str, payload: JsonDict, receiver: Receiver) -> None:
        """Queue a CALL of the gateway's own to the charger (in the charger's version, as given); ``receiver`` gets
        its answer. It takes its turn behind the backend's CALLs. Raises OverflowError when the queue is full."""
        job = Own(action, payload, receiver)
        offered = self.down.offer(job)
        if offered == FULL:
            self.metrics.queue_overflows.labels("down").inc()
            raise OverflowError("too many CALLs queued for this charger")
        if offered == START and not self._start(self.down, job):
            self._next(self.down)

    # ------------------------------------------------------------------ link state, cutover

    def link_lost(self) -> None:
        """The backend link dropped: the outstanding up CALL will never be answered by it; CALLs wait."""
        self.link_up = False
        self.up.hold()
        job = self.up.abandon()
        if job is None:
            return
        if self.resend_lost and (type(job) is Forward or (type(job) is Planned and job.run is not None)):
            if type(job) is Planned:  # translated: the plan's current CALL, under the unique id it went out with
                job.resend = self.up.last_id
            self.up.requeue(job)  # first again when the lane is released
            return
        self.metrics.dropped_results.labels("from_backend", "link_lost").inc()
        if type(job) is Planned:
            self._relay().failed(self.up, job, "Timeout", "backend link lost")
        else:
            if type(job) is Own and job.receiver is not None:
                job.receiver(ConnectionError("backend link lost"))
            self._next(self.up)

    def link_restored(self) -> None:
        """The link is back: send what the charger sent meanwhile."""
        self.link_up = True
        self._release_up()

    def hold(self, on_quiet: Callable[[], None]) -> None:
        """Hold the charger's CALLs (they queue) until :meth:`release`; ``on_quiet`` is called once no CALL is in
        flight either way (at once if none is)."""
        self.held = True
        self.up.hold()
        self._on_quiet = on_quiet
        self._check_quiet()

    def release(self) -> None:
        self.held = False
        self._on_quiet = None
        self._release_up()

    def retarget(self, backend: str, to_backend: Send) -> None:
        """A cutover moved the charger to another primary (same OCPP version): frames go there from now on. CALLs
        the previous primary sent that the charger has not answered yet are forgotten (counted): their answers
        belong to a party that is gone, and never go to the new one."""
        down = self.down
        stale = [job for job in down.queue if type(job) is Forward]
        down.withdraw(stale)
        if type(down.current) is Forward:
            self._stale = down.current
            stale.append(down.current)
        if stale:
            self.metrics.dropped_results.labels("from_charger", "retargeted").inc(len(stale))
        self.backend = backend
        self.fx.to_backend = to_backend

    # ------------------------------------------------------------------ deadlines

    def overdue(self, now: float) -> bool:
        """A CALL in flight has passed its deadline (the sweeper then calls :meth:`expire`)."""
        return self.up.overdue(now) or self.down.overdue(now)

    def expire(self, now: float) -> None:
        """Forget CALLs whose deadline passed (called about once a second by the gateway's sweeper)."""
        for lane in (self.up, self.down):
            job = lane.expire(now)
            if job is None:
                continue
            direction = "up" if lane is self.up else "down"
            self.metrics.call_timeouts.labels(direction, self.backend).inc()
            if self.log is not None:
                self.log.warning("call_timed_out", direction=direction, action=lane.action, unique_id=lane.last_id)
            if type(job) is Planned:
                self._relay().failed(lane, job, "Timeout", "no answer in time")
                continue
            if type(job) is Forward:
                if lane is self.up and self.mirror is not None:
                    self.mirror(job.action, job.raw, None)
            elif type(job) is Own and job.receiver is not None:
                job.receiver(TimeoutError(f"{job.action}: no answer from the charger"))
            self._next(lane)

    # ------------------------------------------------------------------ looking

    def in_flight(self) -> dict[str, dict[str, Any]]:
        """What the admin API shows: the outstanding CALL's action and the queue depth, per direction."""
        return {
            "outstanding": {"up": _on_wire(self.up), "down": _on_wire(self.down)},
            "queued": {"up": len(self.up.queue), "down": len(self.down.queue)},
        }

    def idle(self) -> bool:
        """No CALL in flight or queued either way."""
        return self.up.idle() and self.down.idle()

    def close(self) -> None:
        """The session ended: the gateway's own CALLs get ``ConnectionError``; a translator's state is persisted."""
        for lane in (self.up, self.down):
            for job in lane.clear():
                if type(job) is Own and job.receiver is not None:
                    job.receiver(ConnectionError("charger disconnected"))
        if self.relay is not None:
            self.relay.persist()

    # ------------------------------------------------------------------ the lanes' jobs

    def _offer(self, lane: Lane[Job], call: Call) -> None:
        """An origin's CALL onto ``lane``: started when the lane is free, queued, or refused when the queue is full."""
        if self.relay is not None:
            job: Job = Planned(call)
        else:
            action = call.action
            keep = action == "BootNotification" or action in ROTATION_ACTIONS
            job = Forward(call.unique_id, action, call.raw, call.payload if keep else None)
            if not keep and lane.begin(job, call.unique_id, action, self.clock()):  # the common case, in one step
                if lane is self.up:
                    self.fx.to_backend(call.raw)
                else:
                    self.fx.to_charger(call.raw)
                return
        offered = lane.offer(job)
        if offered == START:
            if not self._start(lane, job):
                self._next(lane)
        elif offered == FULL:
            up = lane is self.up
            self.metrics.queue_overflows.labels("up" if up else "down").inc()
            code = busy_code(self.version if up else self.backend_version)
            self._to_origin(lane, call_error_text(call.unique_id, code, "too many CALLs outstanding"))

    def _start(self, lane: Lane[Job], job: Job) -> bool:
        """``job`` is current on ``lane``: send its (first) CALL. False when it ended at once (answered locally,
        refused): the caller then takes the next job."""
        if type(job) is Forward:  # pass-through
            now = self.clock()
            if lane is self.up:
                if job.action == "BootNotification":
                    self._boot = job.payload  # stored with its answer (a queued second boot must not take its place)
                lane.sent(job.unique_id, job.action, now)
                self.fx.to_backend(job.raw)
            else:
                lane.sent(job.unique_id, job.action, now)
                if job.payload is not None and job.action in ROTATION_ACTIONS:
                    self._watch_rotation(job.unique_id, job.action, job.payload)
                self.fx.to_charger(job.raw)
            return True
        if type(job) is Planned:
            return self._relay().start(lane, job)
        assert type(job) is Own
        if job.receiver is None:  # a translator's CALL: checked like every translated CALL
            try:
                self._relay().check(self._target_version(lane), job.action, "request", job.payload)
            except (schemas.SchemaViolation, schemas.UnknownAction) as e:
                self._relay().invalid(job.action, "request", e)
                return False
            path = out_of_range(job.payload)
            if path is not None:
                self._relay().invalid(job.action, "request", None, OUT_OF_RANGE, path)
                return False
        try:
            self._send_own(lane, job.action, job.payload)
        except EncodeError as e:  # nothing was sent: the lane takes the next job
            if job.receiver is not None:
                job.receiver(ValueError(f"{job.action}: the payload cannot be encoded: {e}"))
            else:
                self._relay().invalid(job.action, "request", e, "unencodable")
            return False
        return True

    def _answered(self, lane: Lane[Job], frame: CallResult | CallError, direction: str) -> None:
        """A CALLRESULT/CALLERROR from ``lane``'s peer."""
        job = lane.answer(frame.unique_id)
        if job is None:
            self.metrics.dropped_results.labels(direction, "unknown_id").inc()
            return
        action = lane.action
        result = type(frame) is CallResult
        if (
            self.quirks is not None
            and type(frame) is CallResult
            and self.quirks.result(direction, action, frame.payload)
        ):
            frame = _repaired_result(frame)
        kind = "callresult" if result else "callerror"
        metrics, backend = self.metrics, self.backend
        metrics.count_message(direction, kind, action, backend)
        metrics.observe_rtt("up" if lane is self.up else "down", action, backend, self.clock() - lane.started)
        if self.tap is not None:
            self.tap(direction, kind, action, frame.unique_id, answer_payload(frame))
        if lane is self.down and self._rotation is not None:
            self._rotation_answered(frame)
        if type(job) is Forward:
            if lane is self.up:  # the primary answered a charger CALL
                if result:
                    assert type(frame) is CallResult
                    if self.validate:
                        self._check_result(action, frame, "backend")
                    if action == "BootNotification":
                        if not self.validate:
                            self._count_duplicate_keys(frame, "backend")
                        self._record_boot(frame.payload)
                self.fx.to_charger(frame.raw)
                spool = self.mirror_spool
                if spool is not None and type(job.raw) is bytes and type(frame.raw) is bytes:
                    spool += (self.mirror_tag, action, job.raw, frame.raw if result else b"")
                elif self.mirror is not None:
                    self.mirror(action, job.raw, frame.raw if result else None)
            else:  # the charger answered the backend's CALL
                if self.validate and type(frame) is CallResult:
                    self._check_result(action, frame, "charger")
                if job is self._stale:
                    self._stale = None  # counted when the cutover switched
                elif self.link_up:
                    self.fx.to_backend(frame.raw)
                else:
                    self.metrics.dropped_results.labels("from_charger", "link_down").inc()
            if lane.queue or self._on_quiet is not None:
                self._next(lane)
            else:
                lane.done()  # nothing waits: the common case
            return
        if type(job) is Planned:
            self._relay().answered(lane, job, frame)
            return
        assert type(job) is Own
        if job.receiver is not None:
            if type(frame) is CallResult:
                job.receiver(AdminAnswer(result=frame.payload))
            else:
                assert type(frame) is CallError
                job.receiver(AdminAnswer(error=(frame.code, frame.description, frame.details)))
        elif type(frame) is CallError and self.log is not None:
            self.log.warning("gateway_call_failed", action=action, code=frame.code)
        self._next(lane)

    def _next(self, lane: Lane[Job]) -> None:
        """The current job of ``lane`` ended: start the next ones until one is in flight or none waits."""
        job = lane.done()
        while job is not None:
            if self._start(lane, job):
                return
            job = lane.done()
        if self.relay is not None:
            self.relay.count_dropped()
        if self._on_quiet is not None:
            self._check_quiet()

    def _release_up(self) -> None:
        if self.held or not self.link_up:
            return
        job = self.up.release()
        if job is not None and not self._start(self.up, job):
            self._next(self.up)

    def _check_quiet(self) -> None:
        if self._on_quiet is not None and self.up.current is None and self.down.current is None:
            on_quiet, self._on_quiet = self._on_quiet, None
            on_quiet()

    def _send_own(self, lane: Lane[Job], action: str, payload: JsonDict, uid: str | None = None) -> None:
        """A CALL of the gateway's own, with a gateway unique id (``uid``: one it sent before, sent again), to
        ``lane``'s peer. Encoded first: a payload orjson cannot encode raises :data:`EncodeError` before the lane or
        the id counter moves."""
        if uid is None:
            uid = f"g{self._ids + 1}.{self._session_id}"
            data = call_text(uid, action, payload)
            self._ids += 1
        else:
            data = call_text(uid, action, payload)
        lane.sent(uid, action, self.clock())
        if lane is self.up:
            self._send_backend(data)
        else:
            if action in ROTATION_ACTIONS:
                self._watch_rotation(uid, action, payload)
            self.fx.to_charger(data)

    def _relay(self) -> Translating:
        relay = self.relay
        assert relay is not None, "only a translated session has planned jobs"
        return relay

    def _note_boot(self, request: JsonDict) -> None:
        self._boot = request

    # ------------------------------------------------------------------ password rotation

    def _watch_rotation(self, uid: str, action: str, payload: JsonDict) -> None:
        """A CALL to the charger that may set its Basic auth password: remember it until the charger answers."""
        password = rotation_offer(action, payload, self.version)
        if password is not None:
            self._rotation = (uid, password)

    def _rotation_answered(self, frame: CallResult | CallError) -> None:
        assert self._rotation is not None
        uid, password = self._rotation
        if frame.unique_id != uid:
            return
        self._rotation = None
        if type(frame) is CallResult and not self.strict:  # else _check_result or the relay counts it
            self._count_duplicate_keys(frame, "charger")
        accepted = type(frame) is CallResult and rotation_accepted(frame.payload, self.version)
        if accepted:
            self.fx.password_accepted(password)
        else:
            self.metrics.password_rotations.labels(self.backend, "passthrough", "rejected").inc()

    def _rotated_upstream(self, call: Call) -> bool:
        """Policy ``terminate``: a CSMS CALL that sets the charger's password goes to the driver, not the charger."""
        answer, password = intercept_csms_call(call.action, call.payload, self.backend_version)
        rotate = self.fx.rotate_upstream
        return (
            answer is not None
            and password is not None
            and rotate is not None
            and rotate(call.unique_id, answer, password)
        )

    # ------------------------------------------------------------------ helpers

    def _target_version(self, lane: Lane[Job]) -> str:
        return self.backend_version if lane is self.up else self.version

    def _to_origin(self, lane: Lane[Job], data: bytes) -> None:
        """To the side whose CALLs ``lane`` carries: the charger for ``up``, the backend for ``down`` (while the
        backend link is down, the answer is dropped and counted: the backend's CALL is gone with the link)."""
        if lane is self.up:
            self.fx.to_charger(data)
        elif self.link_up:
            self.fx.to_backend(data)
        else:
            self.metrics.dropped_results.labels("from_charger", "link_down").inc()

    def _send_backend(self, data: Raw) -> None:
        if self.link_up:
            self.fx.to_backend(data)

    def _record_boot(self, response: JsonDict) -> None:
        """The boot and its answer to the store; the session lets go of the request (an idle charger would hold it
        for the whole connection: ~0.4 kB each, ``bench/idle_memory.py``)."""
        request, self._boot = self._boot, None
        self.fx.persist(
            Write("boot", self.charger_id, "", {"request": request, "response": response, "at": self.wall()})
        )

    def _remember_status(self, p: JsonDict) -> None:
        """The last status of each connector, for the next connection (write-behind, never awaited)."""
        # 1.6 keys statuses by connectorId; 2.0.1 by evseId/connectorId
        sub = str(p.get("connectorId")) if "evseId" not in p else f"{p.get('evseId')}/{p.get('connectorId')}"
        self.fx.persist(Write("status", self.charger_id, sub, dict(p)))

    def _checked_call(self, call: Call, side: str) -> bool:
        """A strict session's check of every CALL: no duplicate keys, and its schema (pass-through validation; a
        translated session checks the schema when the CALL's turn comes). A refused CALL is answered to its
        sender."""
        return self._unique_keys(call, side) and (not self.validate or self._valid_call(call, side))

    def _unique_keys(self, call: Call, side: str) -> bool:
        """False when ``call`` gives a key twice: refused with its sender's format error (1.6
        ``FormationViolation``, 2.x ``FormatViolation``) and counted; the gateway's view of it (last value wins in
        orjson) and the receiver's (first or last wins) could differ."""
        if not has_duplicate_keys(call):
            return True
        kind = ErrorKind.DUPLICATE_KEYS
        self.metrics.frame_errors.labels(side, kind.value).inc()
        if self.log is not None:
            self.log.info("frame_refused", side=side, kind=kind.value, unique_id=call.unique_id, action=call.action)
        version = self.version if side == "charger" else self.backend_version
        answer = call_error_text(call.unique_id, code_for(kind, version), "a key is given twice in one object")
        if side == "charger":
            self.fx.to_charger(answer)
        else:
            self._send_backend(answer)
        return False

    def _count_duplicate_keys(self, result: CallResult, side: str) -> None:
        """A CALLRESULT the gateway reads that gives a key twice: counted, and forwarded all the same (OCPP-J has no
        error channel for answers)."""
        if has_duplicate_keys(result):
            self.metrics.frame_errors.labels(side, "duplicate_keys_result").inc()

    def _valid_call(self, call: Call, side: str) -> bool:
        """Schema check of a CALL (pass-through, ``session.validate_schemas``); an invalid one is answered to its
        sender."""
        version = self.version if side == "charger" else self.backend_version
        try:
            schemas.validate(version, call.action, "request", call.payload)
        except schemas.UnknownAction:
            return True  # not in this version's schemas: the other side answers NotImplemented
        except schemas.SchemaViolation as e:
            self.metrics.frame_errors.labels(side, "schema").inc()
            self._violated(side, "call", call.action, e, call.payload)
            answer = call_error_text(call.unique_id, schemas.schema_error_code(e, version), f"{e.path}: {e.message}")
            if side == "charger":
                self.fx.to_charger(answer)
            else:
                self._send_backend(answer)
            return False
        return True

    def _check_result(self, action: str, result: CallResult, side: str) -> None:
        """Validation: a CALLRESULT with duplicate keys or one that fails its schema is counted (and forwarded)."""
        self._count_duplicate_keys(result, side)
        version = self.version if side == "charger" else self.backend_version
        try:
            schemas.validate(version, action, "response", result.payload)
        except schemas.UnknownAction:
            pass
        except schemas.SchemaViolation as e:
            self.metrics.frame_errors.labels(side, "schema_result").inc()
            self._violated(side, "callresult", action, e, result.payload)
            if self.log is not None:
                self.log.warning("invalid_callresult", side=side, action=action, path=e.path)

    def _violated(self, side: str, message: str, action: str, e: schemas.SchemaViolation, payload: JsonDict) -> None:
        """A frame of ``side`` failed its schema check: counted for the charger's model (quirks)."""
        if self.quirks is not None:
            self.quirks.violated("from_" + side, message, action, e, payload)

    def _refuse_frame(self, e: FrameError, side: str) -> None:
        """A malformed frame: counted, and answered to its sender when it is a CALL with an id to answer under."""
        version = self.version if side == "charger" else self.backend_version
        if e.v21_type and version != "2.1":  # a malformed SEND or CALLRESULTERROR: before 2.1, an unknown type
            e = FrameError(ErrorKind.UNKNOWN_MESSAGE_TYPE, f"unknown message type {e.v21_type}", e.unique_id)
        self.metrics.frame_errors.labels(side, e.kind.value).inc()
        if self.log is not None:
            self.log.info("frame_refused", side=side, kind=e.kind.value, unique_id=e.unique_id and e.unique_id[:40])
        if e.close_code is not None:
            self.fx.fail(side, e.close_code, e.kind.value)
            return
        uid = e.answer_id(version)
        if uid is None:
            return
        answer = call_error_text(uid, e.code(version), e.detail)
        if side == "charger":
            self.fx.to_charger(answer)
        else:
            self._send_backend(answer)


def _repaired_call(frame: Call) -> Call:
    """``frame`` after a quirk rule changed its payload: serialised anew (or, nested deeper than orjson writes,
    forwarded as it came: nothing raises out of a frame callback)."""
    try:
        uid, action, payload = frame.unique_id, frame.action, frame.payload
        return Call(uid, action, payload, call_text(uid, action, payload))
    except EncodeError:
        return frame


def _repaired_result(frame: CallResult) -> CallResult:
    """:func:`_repaired_call` for a CALLRESULT."""
    try:
        return CallResult(frame.unique_id, frame.payload, call_result_text(frame.unique_id, frame.payload))
    except EncodeError:
        return frame


def _on_wire(lane: Lane[Job]) -> str | None:
    return lane.action if lane.unique_id is not None else None


def answer_payload(frame: Call | CallResult | CallError | CallResultError) -> JsonDict:
    """The payload of a frame as a tap event carries it (a CALLERROR's code, description and details)."""
    if type(frame) is CallError or type(frame) is CallResultError:
        return {"errorCode": frame.code, "errorDescription": frame.description, "errorDetails": frame.details}
    assert type(frame) is CallResult or type(frame) is Call
    return frame.payload
