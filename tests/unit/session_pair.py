"""In-memory harness for the charger session (:class:`gateway.core.session.Session`), after h11's ``ConnectionPair``.

A :class:`SessionPair` plays both peers of one session: the charger and the primary backend. It feeds frames from
either side, answers the other side's last CALL, moves a fake clock, and records every effect the session asks for:
frames to each side (kept raw and parsed), state writes, connections it fails (with a close code), passwords the
charger accepted, CALLs taken over under the ``terminate`` rotation policy, and the answers of the gateway's own
CALLs. The session's collaborators are plain
callables that record; its metrics are a real :class:`gateway.metrics.Metrics`. No sockets, no loop, no sleeps.

    pair = SessionPair("1.6")                       # pass-through; SessionPair("1.6", "2.0.1") translates
    pair.charger_sends([2, "1", "Heartbeat", {}])
    pair.assert_to_backend([2, "1", "Heartbeat", {}])
    pair.backend_answers({"currentTime": T0})
    pair.assert_to_charger([3, "1", {"currentTime": T0}])
    pair.assert_nothing_sent()

The ``assert_to_*`` assertions read the frames sent since the last assertion on that side, so each test states
every frame that reached the wire, in order. The gateway's own unique ids are deterministic: :func:`gid`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson

from gateway.core.session import AdminAnswer, Effects, Session, SessionSettings
from gateway.metrics import Metrics
from gateway.ocpp.frames import Raw
from gateway.ocpp.versions import OcppVersion
from gateway.store.base import Write
from gateway.translate import translator_for
from gateway.translate.base import JsonDict, Translator

__all__ = ["BACKEND", "CHARGER_ID", "SESSION_ID", "T0", "WALL", "SessionPair", "gid"]

CHARGER_ID = "CP-1"
BACKEND = "csms"
SESSION_ID = "s1"
T0 = "2025-03-01T12:00:00.000Z"
#: the unix time the session's wall clock shows (the boot record's ``at``)
WALL = 1_740_830_400.0

Frame = list[Any]
Sendable = Frame | bytes | str


def gid(n: int) -> str:
    """The unique id of the gateway's ``n``-th CALL of the session (``g<n>.<session id>``)."""
    return f"g{n}.{SESSION_ID}"


def _encode(frame: Sendable) -> bytes:
    if isinstance(frame, bytes):
        return frame
    if isinstance(frame, str):
        return frame.encode()
    return json.dumps(frame, separators=(",", ":")).encode()


class _Wire:
    """Frames one side received from the session: raw as sent, parsed, and how many an assertion has read."""

    def __init__(self, side: str, effects: list[tuple[str, Any]]) -> None:
        self.side = side
        self.raw: list[Raw] = []
        self.read = 0
        self._effects = effects

    def __call__(self, data: Raw) -> None:
        self.raw.append(data)
        self._effects.append((self.side, json.loads(data)))

    @property
    def frames(self) -> list[Frame]:
        return [json.loads(r) for r in self.raw]

    def unread(self) -> list[Frame]:
        new = [json.loads(r) for r in self.raw[self.read :]]
        self.read = len(self.raw)
        return new

    def last_call(self) -> Frame:
        calls = [f for f in self.frames if f[0] == 2]
        assert calls, f"the {self.side} was sent no CALL"
        return calls[-1]


class SessionPair:
    """A session between an in-memory charger (``version``) and backend (``backend_version``, default the same).

    Versions that differ get a translator (:func:`gateway.translate.translator_for`, with ``translation`` as the
    backend's options) unless one is given. ``rotation="terminate"`` gives the session a ``rotate_upstream``
    effect that records each CSMS password CALL in :attr:`rotations` and takes it over while :attr:`take_rotations`
    is True (as the hub's connection does when no rotation is already running).
    """

    def __init__(
        self,
        version: OcppVersion = "1.6",
        backend_version: OcppVersion | None = None,
        *,
        translator: Translator | None = None,
        translation: Mapping[str, Any] | None = None,
        rotation: str = "passthrough",
        call_timeout_s: float = 30.0,
        max_queued_calls: int = 20,
        validate: bool | None = None,
    ) -> None:
        self.now = 1000.0
        self.metrics = Metrics()
        #: every frame sent and every write, in the order the session asked for them: ("charger" | "backend",
        #: parsed frame) or ("persist", Write)
        self.effects: list[tuple[str, Any]] = []
        self.charger = _Wire("charger", self.effects)
        self.backend = _Wire("backend", self.effects)
        self.writes: list[Write] = []
        self.passwords: list[str] = []
        self.rotations: list[tuple[str, JsonDict, str]] = []
        #: connections the session failed: (side, close code, reason)
        self.failed: list[tuple[str, int, str]] = []
        self.take_rotations = True
        if translator is None and backend_version is not None and backend_version != version:
            translator = translator_for(version, backend_version, session_started_at=T0, options=translation)
        effects = Effects(
            to_charger=self.charger,
            to_backend=self.backend,
            persist=self._persist,
            fail=self._fail,
            password_accepted=self.passwords.append,
            rotate_upstream=self._rotate_upstream if rotation == "terminate" else None,
        )
        self.session = Session(
            charger_id=CHARGER_ID,
            version=version,
            backend=BACKEND,
            effects=effects,
            metrics=self.metrics,
            clock=lambda: self.now,
            wall=lambda: WALL,
            # a translated pair checks every frame it emits against the target's schema (session.validate_schemas:
            # off by default in production, on in every translated test): a translation bug fails the test
            settings=SessionSettings(
                call_timeout_s=call_timeout_s,
                max_queued_calls=max_queued_calls,
                validate=translator is not None if validate is None else validate,
            ),
            translator=translator,
            backend_version=backend_version if translator is not None else None,
            session_id=SESSION_ID,
        )

    # ------------------------------------------------------------------ in

    def charger_sends(self, frame: Sendable) -> None:
        """A text frame from the charger: a list (sent as compact JSON), or bytes/str sent exactly as given."""
        self.session.from_charger(_encode(frame))

    def backend_sends(self, frame: Sendable) -> None:
        """A text frame from the backend, as :meth:`charger_sends`."""
        self.session.from_backend(_encode(frame))

    def backend_answers(self, payload: JsonDict) -> None:
        """The backend's CALLRESULT to the last CALL it was sent."""
        self.backend_sends([3, self.backend.last_call()[1], payload])

    def backend_fails(self, code: str, description: str = "", details: JsonDict | None = None) -> None:
        """The backend's CALLERROR to the last CALL it was sent."""
        self.backend_sends([4, self.backend.last_call()[1], code, description, details or {}])

    def charger_answers(self, payload: JsonDict) -> None:
        """The charger's CALLRESULT to the last CALL it was sent."""
        self.charger_sends([3, self.charger.last_call()[1], payload])

    def charger_fails(self, code: str, description: str = "", details: JsonDict | None = None) -> None:
        """The charger's CALLERROR to the last CALL it was sent."""
        self.charger_sends([4, self.charger.last_call()[1], code, description, details or {}])

    def call_charger(self, action: str, payload: JsonDict) -> list[AdminAnswer | BaseException]:
        """A CALL of the gateway's own (the admin API's); the returned list receives its answer."""
        answers: list[AdminAnswer | BaseException] = []
        self.session.call_charger(action, payload, answers.append)
        return answers

    def advance(self, seconds: float) -> None:
        """Move the fake clock (nothing expires until :meth:`expire`)."""
        self.now += seconds

    def expire(self) -> None:
        """The sweeper's tick at the current time."""
        self.session.expire(self.now)

    def _persist(self, write: Write) -> None:
        self.writes.append(write)
        self.effects.append(("persist", write))

    def _fail(self, side: str, code: int, reason: str) -> None:
        self.failed.append((side, code, reason))
        self.effects.append(("fail", (side, code, reason)))

    def _rotate_upstream(self, unique_id: str, answer: JsonDict, password: str) -> bool:
        self.rotations.append((unique_id, answer, password))
        return self.take_rotations

    # ------------------------------------------------------------------ out

    def counter(self, name: str, **labels: str) -> float:
        """A sample of the session's metrics (0 when never counted), e.g. ``counter("ocppgw_..._total", x="y")``."""
        value = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def writes_of(self, kind: str) -> list[Write]:
        return [w for w in self.writes if w.kind == kind]

    def stored_state(self, write: Write | None = None) -> dict[str, Any] | None:
        """The translation state a ``tx`` write carries (the last one by default), as the store reads it back (the
        relay writes it as JSON text)."""
        w = write or self.writes_of("tx")[-1]
        return orjson.loads(w.value) if isinstance(w.value, bytes) else w.value

    def assert_to_backend(self, *frames: Frame) -> None:
        """Exactly these frames reached the backend since the last look, in this order."""
        got = self.backend.unread()
        assert got == list(frames), f"to the backend: {got}"

    def assert_to_charger(self, *frames: Frame) -> None:
        """Exactly these frames reached the charger since the last look, in this order."""
        got = self.charger.unread()
        assert got == list(frames), f"to the charger: {got}"

    def assert_nothing_sent(self) -> None:
        """Neither side got a frame since the last look."""
        self.assert_to_charger()
        self.assert_to_backend()

    def assert_error_to_charger(self, unique_id: str, code: str) -> None:
        """The one frame the charger got since the last look is a CALLERROR ``code`` for ``unique_id``."""
        got = self.charger.unread()
        assert [f[:3] for f in got] == [[4, unique_id, code]], f"to the charger: {got}"

    def assert_error_to_backend(self, unique_id: str, code: str) -> None:
        """The one frame the backend got since the last look is a CALLERROR ``code`` for ``unique_id``."""
        got = self.backend.unread()
        assert [f[:3] for f in got] == [[4, unique_id, code]], f"to the backend: {got}"
