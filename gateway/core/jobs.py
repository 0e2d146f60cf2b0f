"""What a session's lanes carry and what it does to the world: jobs, effects, settings, admin answers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.core.plan import PlanRun
from gateway.ocpp.frames import Call, Raw
from gateway.store.base import Write
from gateway.translate.base import JsonDict

__all__ = ["AdminAnswer", "Effects", "Forward", "Job", "Own", "Planned", "Receiver", "Send", "SessionSettings"]

Send = Callable[[Raw], None]


@dataclass(slots=True)
class AdminAnswer:
    """What the charger answered to a CALL of the gateway's own."""

    result: dict[str, Any] | None = None
    error: tuple[str, str, dict[str, Any]] | None = None


#: gets the answer of a CALL of the gateway's own: an :class:`AdminAnswer`, or ``TimeoutError`` (no answer in time)
#: / ``ConnectionError`` (the charger went away)
Receiver = Callable[[AdminAnswer | BaseException], None]


@dataclass(frozen=True, slots=True)
class SessionSettings:
    call_timeout_s: float = 60.0
    max_queued_calls: int = 20
    #: pass-through: check every CALL against its version's schema (refused with the version's CALLERROR) and every
    #: CALLRESULT (an invalid answer is counted and logged, then forwarded: OCPP-J has no error channel for
    #: answers). Translated sessions always validate (see the module docstring).
    validate: bool = False


def _ignore(password: str) -> None:
    return None


@dataclass(slots=True)
class Effects:
    """What a session does to the world; its driver carries each out without blocking."""

    to_charger: Send
    to_backend: Send
    #: a state write (write-behind, coalesced by key)
    persist: Callable[[Write], None]
    #: fail a side's WebSocket connection (RFC 6455 §7.1.7): ("charger" | "backend", close code, reason: a bounded
    #: snake_case word, the disconnect reason); the charger is closed, the backend link closed and reconnected
    fail: Callable[[str, int, str], None]
    #: the charger accepted a new Basic auth password the CSMS (or the admin API) sent it (policy ``passthrough``)
    password_accepted: Callable[[str], None] = _ignore
    #: policy ``terminate``: a CSMS CALL sets the charger's password: (its unique id, the answer the charger would
    #: give, the new password) -> True when the driver takes it over (the CALL then never reaches the charger)
    rotate_upstream: Callable[[str, JsonDict, str], bool] | None = None


class Forward:
    """A CALL forwarded as it is (pass-through): its unique id, action and bytes as received. The parsed payload is
    kept only where the session reads it when the CALL goes out (a BootNotification's, a CALL that may set the
    Basic auth password): a round trip holds nothing else of the parse, whose objects are freed at once (measured:
    keeping 1,000 chargers' parsed MeterValues until their answers cost 8 % CPU per round trip, in the allocator
    and the parser's cache misses)."""

    __slots__ = ("action", "payload", "raw", "unique_id")

    def __init__(self, unique_id: str, action: str, raw: Raw, payload: JsonDict | None) -> None:
        self.unique_id = unique_id
        self.action = action
        self.raw = raw
        self.payload = payload


class Own:
    """A CALL of the gateway's own: an admin CALL or a mirror's allowed CALL (``receiver`` set; in the charger's
    version, sent as the operator wrote it), or a translator's ``then_to_*`` CALL (validated; answer dropped)."""

    __slots__ = ("action", "payload", "receiver")

    def __init__(self, action: str, payload: JsonDict, receiver: Receiver | None) -> None:
        self.action = action
        self.payload = payload
        self.receiver = receiver


class Planned:
    """A CALL to translate: planned when its turn on the lane comes (``run`` is set from then on)."""

    __slots__ = ("origin", "resend", "run")

    def __init__(self, origin: Call) -> None:
        self.origin = origin
        self.run: PlanRun | None = None
        #: the unique id of the plan's CALL a lost link left unanswered (``Session.resend_lost``): sent again under it
        self.resend: str | None = None


#: a job on a lane: a CALL forwarded as it is (pass-through), a CALL to translate, or one of the gateway's own
Job = Forward | Planned | Own
