"""In-memory harness for translator table tests: drives a plan through the session's own plan driver
(:class:`gateway.core.plan.PlanRun`), checking every schema.

``exchange`` validates the incoming CALL against the origin's schema, every translated CALL and every answer given
to it against the other side's schemas, the answer to the origin against the origin's response schema, and the
``then_to_*`` CALLs against their target. It also checks that the state snapshot is plain JSON and survives a
``from_dict`` round trip unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.core.plan import PlanRun
from gateway.ocpp import schemas
from gateway.translate.base import JsonDict, OutCall, Plan, Side
from gateway.translate.v16_to_v201 import V16ChargerToV201Csms

OTHER: dict[Side, Side] = {"charger": "csms", "csms": "charger"}

Answer = JsonDict | Callable[[OutCall], JsonDict] | tuple[str, str]  # tuple: CALLERROR (code, description)


class Clock:
    """Deterministic ``now`` for translators."""

    def __init__(self, start: str = "2025-03-01T12:00:00.000Z") -> None:
        self.moment = datetime.fromisoformat(start)

    def __call__(self) -> str:
        return self.moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


class Ids:
    """Deterministic 2.0.1 transaction ids: tx-1, tx-2, ..."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"tx-{self.n}"


@dataclass
class Outcome:
    plan: Plan
    calls: list[OutCall] = field(default_factory=list)
    answer: JsonDict | None = None
    error: tuple[str, str] | None = None

    @property
    def actions(self) -> list[str]:
        return [c.action for c in self.calls]

    def payloads(self, action: str) -> list[JsonDict]:
        return [c.payload for c in self.calls if c.action == action]


def make(
    options: Any = None, clock: Clock | None = None, session_started_at: str | None = None
) -> tuple[V16ChargerToV201Csms, Clock]:
    clock = clock or Clock()
    tr = V16ChargerToV201Csms(options, now=clock, new_tx_id=Ids(), session_started_at=session_started_at or clock())
    return tr, clock


def versions(tr: Any) -> dict[Side, str]:
    """The OCPP version of each side of a translator (set-up A or B)."""
    return {"charger": tr.charger_version, "csms": tr.csms_version}


def _check_state(tr: Any) -> None:
    snap = tr.snapshot()
    text = json.dumps(snap)  # plain JSON
    assert type(tr.state).from_dict(json.loads(text)).to_dict() == snap


def _check_then(tr: Any, plan: Plan) -> None:
    version = versions(tr)
    for call in plan.then_to_csms:
        schemas.validate(version["csms"], call.action, "request", call.payload)
    for call in plan.then_to_charger:
        schemas.validate(version["charger"], call.action, "request", call.payload)


def exchange(
    tr: Any,
    origin: Side,
    action: str,
    payload: Mapping[str, Any],
    answers: Sequence[Answer] | Answer = (),
) -> Outcome:
    """Run one CALL from ``origin`` through the translator; ``answers`` are the other side's answers, in order
    (one value, a list, a function of the call, or a (code, description) tuple for a CALLERROR)."""
    version = versions(tr)
    src, dst = version[origin], version[OTHER[origin]]
    schemas.validate(src, action, "request", payload)
    plan = tr.from_charger(action, payload) if origin == "charger" else tr.from_csms(action, payload)
    out = Outcome(plan)
    _check_state(tr)
    if plan.error is not None:
        assert not plan.calls and plan.reply is None
        out.error = plan.error
        return out
    if plan.reply is not None:
        assert not plan.calls, "a plan has either calls or a reply"
        assert plan.reason, "a local answer names its reason"
        schemas.validate(src, action, "response", plan.reply)
        out.answer = plan.reply
        _check_then(tr, plan)
        return out
    assert plan.calls and plan.finish is not None
    error = isinstance(answers, tuple) and len(answers) == 2 and all(isinstance(x, str) for x in answers)
    single = isinstance(answers, dict) or callable(answers) or error
    queue: list[Answer] = [answers] if single else list(answers)  # type: ignore[list-item]
    run = PlanRun(plan)  # the session's plan driver: the same order, answers and on_error substitution
    more: bool | None = True
    while more:
        index, call = run.index, run.call
        schemas.validate(dst, call.action, "request", call.payload)
        out.calls.append(call)
        spec = queue[index] if index < len(queue) else (queue[-1] if queue else {})
        if isinstance(spec, tuple):
            more = run.failed(spec[0], spec[1])
            _check_state(tr)
            if more is None:
                out.error = (tr.map_error(spec[0], origin), spec[1])
                return out
            continue
        answer = spec(call) if callable(spec) else spec
        schemas.validate(dst, call.action, "response", answer)
        more = run.answered(answer)
    out.answer = run.finish()
    schemas.validate(src, action, "response", out.answer)
    _check_state(tr)
    _check_then(tr, plan)
    return out
