"""A session's quirk hook: the repairs of the charger's profile, and what the compliance report counts. Pure.

The app layer (gateway/app/quirks.py) gives a session a :class:`SessionQuirks` only when something needs it: a
profile matched the charger, or the compliance report is on. Otherwise ``Session.quirks`` is None and a frame costs
one attribute test. The session calls it, before its schema check and before translation:

* :meth:`SessionQuirks.call` with every CALL, :meth:`SessionQuirks.result` with every CALLRESULT (and the action of
  the CALL it answers): the profile's rules for that message repair the payload in place; True when they changed it
  (the session then serialises it anew: a repaired frame cannot stay byte-identical). A message no rule names is not
  touched, and its bytes are forwarded as they came.
* :meth:`SessionQuirks.violated` when the session's own check (``validate_schemas``, or a translated session) finds a
  charger's frame invalid after the repairs.

In a session that does not validate, ``sample_every`` N > 0 checks every N-th charger CALL and CALLRESULT against its
schema, for counting only (nothing is refused: the session's behaviour does not change).

What it counts: ``ocppgw_quirk_repairs_total{profile,rule}`` (values changed), ``ocppgw_schema_violations_total{model,
action,outcome}`` (charger frames only: ``repaired`` by a rule, ``unrepaired`` as the check found them), and, through
``sink`` (the report's counters for the charger's model, written to the store behind: gateway/app/quirks.py), each
repair and violation with its message, path and kind; ``checked`` counts the charger frames checked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.core.repair import Applied, Repairs, run
from gateway.metrics import Metrics
from gateway.ocpp import schemas
from gateway.ocpp.actions import action_label
from gateway.quirks.violations import classify

__all__ = ["Sink", "SessionQuirks"]

#: adds ``n`` to one counter of the charger's model: ("r", version, profile, rule, direction, message, action, path,
#: repair) values repaired, ("f", ...the same) of them violations, ("v", version, direction, message, action, path,
#: kind, hint, value) violations found
Sink = Callable[[tuple[str, ...], int], None]


class SessionQuirks:
    __slots__ = ("_backend_calls", "_backend_results", "_charger_calls", "_charger_results", "_counting", "_every",
                 "_incs", "_metrics", "_sink", "_until", "checked", "model", "profile", "repairs", "validating",
                 "version")  # fmt: skip

    def __init__(self, *, repairs: Repairs | None, model: str, version: str, metrics: Metrics, sink: Sink,
                 validating: bool, sample_every: int = 0) -> None:  # fmt: skip
        self.repairs = repairs
        self.profile = repairs.profile.name if repairs is not None else ""
        #: the ``model`` label of this charger's violations (bounded: see gateway/app/quirks.py)
        self.model = model
        self.version = version
        self.validating = validating
        self._metrics = metrics
        self._sink = sink
        self._every = 0 if validating else sample_every
        self._counting = validating or self._every > 0
        #: per rule name: its ``ocppgw_quirk_repairs_total`` child's increment (bound once)
        self._incs: dict[str, Callable[[float], None]] = {}
        self._until = sample_every
        #: charger frames checked against their schema (by the session, or sampled here), not yet reported
        self.checked = 0
        # per frame: one lookup of the action in the rules of its direction and message
        table = repairs.by_message if repairs is not None else {}
        self._charger_calls = table.get(("from_charger", "call"), {})
        self._charger_results = table.get(("from_charger", "callresult"), {})
        self._backend_calls = table.get(("from_backend", "call"), {})
        self._backend_results = table.get(("from_backend", "callresult"), {})

    def call(self, direction: str, action: str, payload: dict[str, Any]) -> bool:
        if direction == "from_charger":
            rules = self._charger_calls.get(action)
            changed = rules is not None and self._repair(rules, direction, "call", action, payload)
            if self._counting:
                self._count("call", action, payload)
            return changed
        rules = self._backend_calls.get(action)
        return rules is not None and self._repair(rules, direction, "call", action, payload)

    def result(self, direction: str, action: str, payload: dict[str, Any]) -> bool:
        if direction == "from_charger":
            rules = self._charger_results.get(action)
            changed = rules is not None and self._repair(rules, direction, "callresult", action, payload)
            if self._counting:
                self._count("callresult", action, payload)
            return changed
        rules = self._backend_results.get(action)
        return rules is not None and self._repair(rules, direction, "callresult", action, payload)

    def _repair(self, rules: Any, direction: str, message: str, action: str, payload: dict[str, Any]) -> bool:
        done = run(rules, payload)
        if done is None:
            return False
        self._repaired(direction, message, action, done)
        return True

    def _count(self, message: str, action: str, payload: dict[str, Any]) -> None:
        """A charger frame: checked by the session (counted), or every N-th sampled here."""
        if self.validating:
            self.checked += 1
        elif self._every:
            self._until -= 1
            if self._until <= 0:
                self._until = self._every
                self._sample(message, action, payload)

    def _repaired(self, direction: str, message: str, action: str, done: list[Applied]) -> None:
        m, profile = self._metrics, self.profile
        for a in done:
            rule = a.rule
            inc = self._incs.get(rule.name)
            if inc is None:
                inc = self._incs[rule.name] = m.quirk_repairs.labels(profile, rule.name).inc
            inc(a.changed)
            key = (self.version, profile, rule.name, direction, message, action, rule.path, rule.repair)
            self._sink(("r", *key), a.changed)
            if a.fixed:
                self._sink(("f", *key), a.fixed)
                if direction == "from_charger":
                    m.schema_violations.labels(self.model, action_label(action), "repaired").inc(a.fixed)

    def _sample(self, message: str, action: str, payload: dict[str, Any]) -> None:
        try:
            schemas.validate(self.version, action, "request" if message == "call" else "response", payload)
        except schemas.UnknownAction:
            return
        except schemas.SchemaViolation as e:
            self.violated("from_charger", message, action, e, payload)
        self.checked += 1

    def violated(self, direction: str, message: str, action: str, e: schemas.SchemaViolation,
                 payload: dict[str, Any]) -> None:  # fmt: skip
        """A charger's frame failed its schema (after the repairs): counted for its model."""
        if direction != "from_charger":
            return
        v = classify(e.path, e.message, payload)
        self._metrics.schema_violations.labels(self.model, action_label(action), "unrepaired").inc()
        self._sink(("v", self.version, direction, message, action, v.path, v.kind, v.hint, v.value or ""), 1)

    def take_checked(self) -> int:
        n, self.checked = self.checked, 0
        return n
