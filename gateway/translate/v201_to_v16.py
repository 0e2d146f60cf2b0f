"""Translator for set-up B: a 2.0.1 charger behind the gateway, a 1.6 CSMS upstream.

Reference: ocpp-translation.md §1 (principles, state), §4 (set-up B), §5 (messages without counterpart). The class
here only dispatches; the translation lives in ``gateway/translate/v201_v16/`` (one module per concern) and the
state in :class:`gateway.translate.v201_v16.state.ReverseState`.

Identifiers: the charger assigns the 2.0.1 string ``transactionId``, the 1.6 CSMS the integer one (known only once
StartTransaction.conf arrived: until then the 1.6 translations of later events wait in the transaction's queue, in
the persisted state, and never reach the CSMS with a made-up id), the gateway assigns ``remoteStartId`` and the
``requestId`` of GetLog/UpdateFirmware.

Decisions where the reference is thin are written in the docstring of the module that implements them
(``context``, ``transactions``, ``meter``, ``charger_calls``, ``csms_calls``). :data:`POLICY` is the
machine-readable table of what happens to every action (README's translation section is generated from it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway.ocpp.errors import normalise_code
from gateway.translate.base import JsonDict, Plan, Side
from gateway.translate.v16_to_v201 import V16_CENTRAL_ACTIONS, V201_STATION_ACTIONS
from gateway.translate.v201_v16.charger_calls import CHARGER_HANDLERS, CHARGER_POLICY
from gateway.translate.v201_v16.context import Context, Options, utc_now
from gateway.translate.v201_v16.csms_calls import CSMS_HANDLERS, CSMS_POLICY
from gateway.translate.v201_v16.state import ReverseState

__all__ = ["POLICY", "Options", "V201ChargerToV16Csms"]

#: action -> policy, charger-initiated (2.0.1) first, then CSMS-initiated (1.6)
POLICY: dict[str, str] = {**CHARGER_POLICY, **CSMS_POLICY}


class V201ChargerToV16Csms:
    """The :class:`gateway.translate.base.Translator` for a 2.0.1 charger and a 1.6 CSMS (one per session).

    ``now`` returns the current time as an ISO-8601 UTC string; ``session_started_at`` is the start of the charger's
    WebSocket session (default: ``now()`` at construction).
    """

    charger_version = "2.0.1"
    csms_version = "1.6"

    def __init__(
        self,
        options: Options | None = None,
        *,
        now: Callable[[], str] = utc_now,
        session_started_at: str | None = None,
        state: ReverseState | None = None,
    ) -> None:
        self._ctx = Context(
            state=state or ReverseState(),
            options=options or Options(),
            now=now,
            session_started_at=session_started_at or now(),
        )

    @property
    def state(self) -> ReverseState:
        return self._ctx.state

    @property
    def options(self) -> Options:
        return self._ctx.options

    def from_charger(self, action: str, payload: Mapping[str, Any]) -> Plan:
        """A 2.0.1 CALL from the charger (already schema-checked); the plan's calls go to the 1.6 CSMS."""
        handler = CHARGER_HANDLERS.get(action)
        if handler is None:
            if action in V201_STATION_ACTIONS:
                return Plan(error=("NotSupported", f"{action} is not translated"), reason="not_translated")
            if action in V16_CENTRAL_ACTIONS or action in CSMS_HANDLERS:
                return Plan(error=("NotSupported", f"{action} is sent by a CSMS"), reason="wrong_direction")
            return Plan(error=("NotImplemented", f"unknown action {action}"), reason="unknown_action")
        self._ctx.prune()
        return handler(self._ctx, payload)

    def from_csms(self, action: str, payload: Mapping[str, Any]) -> Plan:
        """A 1.6 CALL from the CSMS (already schema-checked); the plan's calls go to the 2.0.1 charger."""
        handler = CSMS_HANDLERS.get(action)
        if handler is None:
            if action in CHARGER_HANDLERS or action in ("StartTransaction", "StopTransaction"):
                return Plan(error=("NotSupported", f"{action} is sent by a charge point"), reason="wrong_direction")
            return Plan(error=("NotImplemented", f"unknown action {action}"), reason="unknown_action")
        self._ctx.prune()
        return handler(self._ctx, payload)

    def map_error(self, code: str, to: Side) -> str:
        return normalise_code(code, self.charger_version if to == "charger" else self.csms_version)

    def snapshot(self) -> JsonDict:
        return self._ctx.state.to_dict()

    def snapshot_json(self) -> bytes:
        """:meth:`snapshot` as its JSON text, without its copies (what the relay persists)."""
        return self._ctx.state.to_json()

    def restore(self, data: Mapping[str, Any]) -> None:
        self._ctx.state = ReverseState.from_dict(data)

    def take_dropped(self) -> list[tuple[str, str]]:
        """(action, what) of every field/sample/message dropped since the last call (§1.1 rule 9)."""
        dropped, self._ctx.dropped = self._ctx.dropped, []
        return dropped
