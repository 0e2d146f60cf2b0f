"""The translator seam between a charger session and its backend link.

A translator sits between the two sides when the charger's OCPP version differs from the backend's. It is pure:
no sockets, no store, no clock beyond what it is handed. The session drives it and persists its state.

Model (see ../shared/ocpp-translation.md §1.1):

* A CALL from one side becomes a :class:`Plan`: zero or more CALLs toward the other side, sent one at a time in
  order, and a ``finish`` function that turns their answers into the answer for the side that asked.
  A plan with no calls answers locally (``reply``) or refuses (``error``).
* Answers of the other side reach ``finish`` in order as plain payload dicts. ``finish`` may update the translator
  state (it is a method closure on the translator object) and returns the payload of the CALLRESULT to send back.
* A CALLERROR from the other side for any call of a plan ends the plan: the session maps its error code with
  :meth:`Translator.map_error` and answers the origin with that CALLERROR.
* State: ``snapshot()`` returns a JSON-serialisable dict that the session writes to the store *before* any
  translated frame leaves (write-ahead); ``restore()`` loads it on reconnect or restart.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = [
    "JsonDict", "OutCall", "Plan", "Side", "Translator", "compact", "data_transfer_from_v16", "data_transfer_to_v16",
    "forward", "local",
]  # fmt: skip

JsonDict = dict[str, Any]
Side = Literal["charger", "csms"]


@dataclass(frozen=True, slots=True)
class OutCall:
    """One CALL the translator wants sent to the other side."""

    action: str
    payload: JsonDict


@dataclass(slots=True)
class Plan:
    """What to do with one incoming CALL.

    Exactly one of these holds:
    - ``calls`` non-empty: send them in order (one outstanding at a time); when all answered, the answer to the
      origin is ``finish([answer payloads...])``.
    - ``reply`` is not None: answer the origin locally with this CALLRESULT payload (counted as a local answer,
      ``reason`` says why).
    - ``error`` is not None: answer the origin with CALLERROR (code, description) in the *origin's* version.

    Optional extras (added for translation, set-up A):

    - ``then_to_csms`` / ``then_to_charger``: CALLs the gateway itself originates *after* the origin has been
      answered (NotifyReport after GetBaseReport, a deferred Reset after the last Ended). ``finish`` (or the
      handler, for a local ``reply``) may fill these lists; the session reads them after ``finish`` returned, sends
      them one at a time with its own unique ids, ignores their CALLRESULT payloads and logs/counts a CALLERROR or
      timeout (§5.3: they never reach the origin).
    - ``on_error``: called when call number ``index`` of ``calls`` gets a CALLERROR (``code``, ``description`` as
      received) or times out (``code`` ``"Timeout"``). Returning a payload substitutes it as that call's answer
      (not schema-checked: it is internal) and the plan goes on; returning None ends the plan with the mapped
      CALLERROR (the default without a hook). Either way the translator can undo bookkeeping; the session persists
      the state after it, as after ``finish``.
    """

    calls: list[OutCall] = field(default_factory=list)
    finish: Callable[[list[JsonDict]], JsonDict] | None = None
    reply: JsonDict | None = None
    error: tuple[str, str] | None = None
    reason: str = ""
    then_to_csms: list[OutCall] = field(default_factory=list)
    then_to_charger: list[OutCall] = field(default_factory=list)
    on_error: Callable[[int, str, str], JsonDict | None] | None = None


class Translator(Protocol):
    """One per session when charger and backend versions differ."""

    charger_version: str  # "1.6" | "2.0.1"
    csms_version: str

    def from_charger(self, action: str, payload: Mapping[str, Any]) -> Plan:
        """A CALL the charger sent; the plan's calls go to the CSMS."""
        ...

    def from_csms(self, action: str, payload: Mapping[str, Any]) -> Plan:
        """A CALL the CSMS sent; the plan's calls go to the charger."""
        ...

    def map_error(self, code: str, to: Side) -> str:
        """An OCPP-J error code of one version, spelled for the version of side ``to``."""
        ...

    def snapshot(self) -> JsonDict:
        """JSON-serialisable state to persist."""
        ...

    def restore(self, data: Mapping[str, Any]) -> None:
        """Load state written by :meth:`snapshot`."""
        ...


# -- helpers shared by both translators -----------------------------------------------------------------------------


def local(reply: JsonDict, reason: str) -> Plan:
    """A plan answered by the translator itself (§1.1 rule 4); ``reason`` labels the local-answer metric."""
    return Plan(reply=reply, reason=reason)


def forward(action: str, payload: JsonDict, finish: Callable[[list[JsonDict]], JsonDict]) -> Plan:
    """The common one-CALL-in, one-CALL-out plan."""
    return Plan(calls=[OutCall(action, payload)], finish=finish)


def compact(data: object) -> str:
    """DataTransfer ``data`` for 1.6, where it is a string: a string as it is, anything else as compact JSON."""
    return data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))


def data_transfer_to_v16(payload: Mapping[str, Any]) -> Plan:
    """A 2.0.1 DataTransfer toward a 1.6 peer: non-string ``data`` becomes compact JSON; the answer passes back."""
    request: JsonDict = {k: payload[k] for k in ("vendorId", "messageId") if k in payload}
    if payload.get("data") is not None:
        request["data"] = compact(payload["data"])

    def finish(answers: list[JsonDict]) -> JsonDict:
        result: JsonDict = {"status": answers[0]["status"]}
        if "data" in answers[0]:
            result["data"] = answers[0]["data"]
        return result

    return forward("DataTransfer", request, finish)


def data_transfer_from_v16(payload: Mapping[str, Any]) -> Plan:
    """A 1.6 DataTransfer toward a 2.0.1 peer: the request passes; answer ``data`` that is not a string (2.0.1
    allows any JSON) becomes compact JSON for the 1.6 side."""
    request = {k: payload[k] for k in ("vendorId", "messageId", "data") if k in payload}

    def finish(answers: list[JsonDict]) -> JsonDict:
        result: JsonDict = {"status": answers[0]["status"]}
        if answers[0].get("data") is not None:
            result["data"] = compact(answers[0]["data"])
        return result

    return forward("DataTransfer", request, finish)
