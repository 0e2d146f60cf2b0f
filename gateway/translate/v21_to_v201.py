"""Translator for set-up C: an OCPP 2.1 charger behind the gateway, an OCPP 2.0.1 CSMS upstream.

2.1 (IEC 63584) is a superset of 2.0.1: every 2.0.1 message is a 2.1 message, with the same identifiers and the
same meaning, and 2.1 adds messages, fields and values. So this translator mostly passes messages through:

* a charger CALL that 2.0.1 has goes to the CSMS as it is, less the fields 2.1 added (dropped, counted) and with
  the values 2.1 added mapped to 2.0.1's or their element dropped (:mod:`gateway.translate.v21_v201.rules`); a
  message with none of them is the same object, not a copy; the CSMS's answer goes back unchanged (it is valid
  2.1: the session checks it against 2.1's schema, as every translated CALL is checked against its target's);
* a CSMS CALL (2.0.1) goes to the charger unchanged (checked against 2.1's schema); the charger's answer comes
  back less its 2.1 additions;
* the charger's 2.1-only CALLs and SENDs are wrapped in DataTransfer, answered or dropped as
  :data:`gateway.translate.v21_v201.policy.CHARGER_POLICY` says (README shows it);
* the CSMS's DataTransfers that carry a 2.1 CSMS CALL are unwrapped (the policy module's docstring).

Which fields are 2.1's is not written by hand: :mod:`gateway.translate.v21_v201.fields` is generated from the
``ocpp`` package's 2.0.1 and 2.1 schemas (``scripts/gen_v21_fields.py``), and a test checks it against them.

State (:class:`gateway.translate.v21_v201.state.V21State`, persisted through ``snapshot``/``restore`` like the
other translators'): the periodic event streams the CSMS accepted.

Values 2.0.1 cannot carry and no rule maps (a string longer than 2.0.1 allows, such as an idToken over 36
characters; a fractional number where 2.0.1 wants an integer; a charging schedule period without ``limit``) make
the translated CALL fail 2.0.1's schema: the session then answers the charger ``InternalError`` and sends nothing
(counted ``ocppgw_translation_errors_total{kind="invalid_call"}``): nothing invalid reaches the CSMS.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway.ocpp.errors import normalise_code
from gateway.translate.base import JsonDict, OutCall, Plan, Side, forward, local
from gateway.translate.v16_v201.context import utc_now
from gateway.translate.v21_v201.policy import (
    CHARGER_POLICY,
    CSMS_POLICY,
    SEND_ACTIONS,
    V21_CSMS_ACTIONS,
    V21_STATION_ACTIONS,
    V201_CSMS_ACTIONS,
    V201_STATION_ACTIONS,
    unwrap,
    wrap_call,
    wrap_send,
)
from gateway.translate.v21_v201.rules import TREES, Uncarriable, to_v201
from gateway.translate.v21_v201.state import V21State

__all__ = ["CHARGER_POLICY", "CSMS_POLICY", "POLICY", "V21ChargerToV201Csms"]

#: action -> policy, the charger's (2.1) first, then the CSMS's (2.0.1)
POLICY: dict[str, str] = {**CHARGER_POLICY, **CSMS_POLICY}

_NOT_IN_201 = {"reasonCode": "NotIn201"}

#: a charger CALL with a value 2.0.1 cannot carry, and nothing smaller to drop: the answer (None: CALLERROR
#: NotSupported), the reason label of ``ocppgw_translation_local_answers_total``
_UNCARRIABLE: dict[str, tuple[JsonDict, str]] = {
    "Authorize": ({"idTokenInfo": {"status": "Invalid"}}, "id_token_type_not_in_201"),
    "MeterValues": ({}, "measurands_not_in_201"),
    "NotifyEVChargingNeeds": ({"status": "Rejected", "statusInfo": _NOT_IN_201}, "energy_transfer_not_in_201"),
    "ReportChargingProfiles": ({}, "profiles_not_in_201"),
    "SignCertificate": ({"status": "Rejected", "statusInfo": _NOT_IN_201}, "certificate_type_not_in_201"),
}


def _first(answers: list[JsonDict]) -> JsonDict:
    return answers[0]


class V21ChargerToV201Csms:
    """The :class:`gateway.translate.base.Translator` for a 2.1 charger and a 2.0.1 CSMS (one per session)."""

    charger_version = "2.1"
    csms_version = "2.0.1"

    def __init__(
        self,
        *,
        now: Callable[[], str] = utc_now,
        session_started_at: str | None = None,
        state: V21State | None = None,
    ) -> None:
        self.state = state or V21State()
        self._now = now
        self._dropped: list[tuple[str, str]] = []
        #: action -> finish of a CSMS CALL: the charger's answer less its 2.1 additions
        self._answer_of: dict[str, Callable[[list[JsonDict]], JsonDict]] = {}

    # ------------------------------------------------------------------ the charger's CALLs and SENDs

    def from_charger(self, action: str, payload: Mapping[str, Any]) -> Plan:
        """A 2.1 CALL from the charger (already checked against 2.1's schema); the plan's CALLs go to the CSMS."""
        if action in V201_STATION_ACTIONS or action == "DataTransfer":
            p = payload if type(payload) is dict else dict(payload)
            if (action, "request") not in TREES:
                return forward(action, p, _first)  # the same object: nothing of it is 2.1's own
            lost: list[str] = []
            try:
                out = to_v201(action, "request", p, lost)
            except Uncarriable as e:
                return self._uncarriable(action, e, lost)
            self._count(action, lost)
            return forward(action, out, _first)
        if action in V21_STATION_ACTIONS:
            return wrap_call(self.state, action, payload, self._now)
        if action in SEND_ACTIONS:
            return Plan(error=("NotSupported", f"{action} is sent as a SEND frame"), reason="wrong_message_type")
        if action in V201_CSMS_ACTIONS or action in V21_CSMS_ACTIONS:
            return Plan(error=("NotSupported", f"{action} is sent by a CSMS"), reason="wrong_direction")
        return Plan(error=("NotImplemented", f"unknown action {action}"), reason="unknown_action")

    def send_from_charger(self, action: str, payload: Mapping[str, Any]) -> OutCall | None:
        """A SEND from the charger (checked against 2.1's schema): the CALL that carries it to the CSMS, or None
        (dropped, counted). Never answered either way."""
        out = wrap_send(self.state, action, payload)
        if out is None:
            self._dropped.append((action, "send"))
        return out

    def _uncarriable(self, action: str, e: Uncarriable, lost: list[str]) -> Plan:
        self._count(action, lost)
        answer = _UNCARRIABLE.get(action)
        self._dropped.append((action, "message"))
        if answer is None:
            return Plan(error=("NotSupported", str(e)), reason="value_not_in_201")
        reply, reason = answer
        return local({k: dict(v) if isinstance(v, dict) else v for k, v in reply.items()}, reason)

    # ------------------------------------------------------------------ the CSMS's CALLs

    def from_csms(self, action: str, payload: Mapping[str, Any]) -> Plan:
        """A 2.0.1 CALL from the CSMS (already checked against 2.0.1's schema); the plan's CALLs go to the charger."""
        if action == "DataTransfer":
            plan = unwrap(payload)
            if plan is not None:
                return plan
        elif action not in V201_CSMS_ACTIONS:
            if action in V201_STATION_ACTIONS or action in V21_STATION_ACTIONS or action in SEND_ACTIONS:
                return Plan(error=("NotSupported", f"{action} is sent by a charging station"), reason="wrong_direction")
            return Plan(error=("NotImplemented", f"unknown action {action}"), reason="unknown_action")
        return forward(action, payload if type(payload) is dict else dict(payload), self._answer(action))

    def _answer(self, action: str) -> Callable[[list[JsonDict]], JsonDict]:
        finish = self._answer_of.get(action)
        if finish is not None:
            return finish
        if (action, "response") not in TREES:
            finish = _first
        else:

            def finish(answers: list[JsonDict]) -> JsonDict:
                lost: list[str] = []
                try:
                    out = to_v201(action, "response", answers[0], lost)
                except Uncarriable:  # no response rule can raise (tested); were one to, 2.0.1's check refuses it
                    return answers[0]
                self._count(action, lost)
                return out

        self._answer_of[action] = finish
        return finish

    # ------------------------------------------------------------------ the rest of the Translator protocol

    def _count(self, action: str, lost: list[str]) -> None:
        for what in lost:
            self._dropped.append((action, what))

    def map_error(self, code: str, to: Side) -> str:
        return normalise_code(code, self.charger_version if to == "charger" else self.csms_version)

    def snapshot(self) -> JsonDict:
        return self.state.to_dict()

    def restore(self, data: Mapping[str, Any]) -> None:
        # in place: plans made before (their finish holds the state) see the restored one
        self.state.streams = V21State.from_dict(data).streams

    def take_dropped(self) -> list[tuple[str, str]]:
        """(action, what) of every field, value, element or message dropped since the last call."""
        dropped, self._dropped = self._dropped, []
        return dropped
