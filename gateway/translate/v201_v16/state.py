"""Translation state of one 2.0.1 charger behind a 1.6 CSMS (set-up B, ocpp-translation.md §1.3 and §4).

Same contract as :mod:`gateway.translate.state` (set-up A): plain JSON through ``to_dict()``/``from_dict()``, missing
keys take their defaults, unknown keys are ignored, so adding a field never breaks a stored state.

The roles of the identifiers are swapped against set-up A: the **charger** assigns the 2.0.1 string
``transactionId`` (the key of :attr:`ReverseState.transactions`), the **1.6 CSMS** assigns the integer one
(:attr:`TxB.tx_int`, None until StartTransaction.conf arrived), the **gateway** assigns ``remoteStartId`` and the
``requestId`` of log and firmware jobs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import orjson

from gateway.translate.state import _dict_or_none as _dict
from gateway.translate.state import _int_or_none as _int
from gateway.translate.state import _str_or_none as _str

__all__ = ["PendingStart", "ReverseState", "TxB"]

StartState = Literal["held", "sent", "acked"]
TxPhase = Literal["open", "ended"]


def _int_or(value: object, default: int) -> int:
    found = _int(value)
    return default if found is None else found


@dataclass(slots=True)
class TxB:
    """One 2.0.1 transaction of the charger, keyed in the state by its string ``transactionId``."""

    tx201: str
    evse: int = 0  # 2.0.1 evse.id
    connector: int = 0  # the 1.6 connectorId it maps to
    tx_int: int | None = None  # the 1.6 CSMS's transactionId; None until StartTransaction.conf
    #: held: no idToken yet, nothing sent to the CSMS; sent: StartTransaction in flight; acked: tx_int known
    start_state: StartState = "held"
    id_tag: str | None = None  # the 1.6 idTag the transaction started with
    start_ts: str | None = None  # timestamp of the Started event (the 1.6 StartTransaction's timestamp)
    meter_start_wh: int | None = None
    reservation_id: int | None = None
    remote_start_id: int | None = None
    stop_id_tag: str | None = None  # idToken of a StopAuthorized/Deauthorized event, for StopTransaction.idTag
    charging_state: str | None = None  # last 2.0.1 chargingState reported by the charger
    last_energy_wh: int | None = None  # latest Energy.Active.Import.Register reading (meterStop fallback)
    last_seq: int = -1  # highest seqNo seen
    #: 1.6 CALLs waiting for ``tx_int``: [action, payload] with the transactionId left out, in order
    queue: list[list[Any]] = field(default_factory=list)
    #: answers already given to the charger, by seqNo (str), for duplicate events (the last few only)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    start_result: dict[str, Any] | None = None  # idTagInfo of the StartTransaction.conf
    phase: TxPhase = "open"
    ended_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _TX_FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TxB:
        start_state = data.get("start_state")
        phase = data.get("phase")
        answers = data.get("answers")
        queue = data.get("queue")
        return cls(
            tx201=str(data.get("tx201", "")),
            evse=_int(data.get("evse")) or 0,
            connector=_int(data.get("connector")) or 0,
            tx_int=_int(data.get("tx_int")),
            start_state=start_state if start_state in ("held", "sent", "acked") else "held",
            id_tag=_str(data.get("id_tag")),
            start_ts=_str(data.get("start_ts")),
            meter_start_wh=_int(data.get("meter_start_wh")),
            reservation_id=_int(data.get("reservation_id")),
            remote_start_id=_int(data.get("remote_start_id")),
            stop_id_tag=_str(data.get("stop_id_tag")),
            charging_state=_str(data.get("charging_state")),
            last_energy_wh=_int(data.get("last_energy_wh")),
            last_seq=_int_or(data.get("last_seq"), -1),
            queue=[list(q) for q in queue if isinstance(q, list | tuple) and len(q) == 2]
            if isinstance(queue, list)
            else [],
            answers={str(k): dict(v) for k, v in answers.items() if isinstance(v, Mapping)}
            if isinstance(answers, Mapping)
            else {},
            start_result=_dict(data.get("start_result")),
            phase=phase if phase in ("open", "ended") else "open",
            ended_at=_str(data.get("ended_at")),
        )


_TX_FIELDS = tuple(f.name for f in fields(TxB))


@dataclass(slots=True)
class PendingStart:
    """A RemoteStartTransaction the gateway passed on as RequestStartTransaction (§4.4)."""

    remote_start_id: int
    id_tag: str
    evse: int | None  # None: any EVSE
    expires_at: str
    tx201: str | None = None  # transactionId the charger returned in RequestStartTransactionResponse

    def to_dict(self) -> dict[str, Any]:
        return {
            "remote_start_id": self.remote_start_id,
            "id_tag": self.id_tag,
            "evse": self.evse,
            "expires_at": self.expires_at,
            "tx201": self.tx201,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PendingStart:
        return cls(
            remote_start_id=_int(data.get("remote_start_id")) or 0,
            id_tag=str(data.get("id_tag", "")),
            evse=_int(data.get("evse")),
            expires_at=str(data.get("expires_at", "")),
            tx201=_str(data.get("tx201")),
        )


@dataclass(slots=True)
class ReverseState:
    """Everything the set-up B translator remembers about one charger."""

    transactions: dict[str, TxB] = field(default_factory=dict)  # 2.0.1 transactionId -> record
    pending_starts: list[PendingStart] = field(default_factory=list)
    next_remote_start_id: int = 1
    next_request_id: int = 1  # requestId of GetLog / UpdateFirmware the gateway sends
    #: "<evse>.<connector>" (2.0.1) -> {"status": 2.0.1 ConnectorStatus, "status16": last 1.6 status sent, "at": ...,
    #: "finishing": true after an Ended while still Occupied (1.6 Finishing; see v201_v16.transactions)}
    connector_status: dict[str, dict[str, Any]] = field(default_factory=dict)
    boot: dict[str, Any] | None = None  # last 2.0.1 BootNotification payload (reason kept here)
    boot_result: dict[str, Any] | None = None
    reset: dict[str, Any] | None = None  # {type (as the 1.6 CSMS asked), sentAs, at}
    log_request: dict[str, Any] | None = None  # {requestId, at}
    fw_request: dict[str, Any] | None = None  # {requestId, at}
    aliases: dict[str, str] = field(default_factory=dict)  # 1.6 alias idTag -> the 2.0.1 idToken it stands for
    id_types: dict[str, str] = field(default_factory=dict)  # 1.6 idTag -> 2.0.1 IdTokenEnumType last seen
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)  # 1.6 key -> {value, readonly} last read
    #: StatusNotifications the CSMS asked for with TriggerMessage, oldest first (at most 16, each for 60 s; see
    #: v201_v16.transactions): {"evse": 2.0.1 evse id or None (every connector), "connectorId": ..., "at": ISO
    #: time of the TriggerMessage, "reported": ["<evse>.<connector>", ...] (whole-station trigger: already sent)}
    status_triggers: list[dict[str, Any]] = field(default_factory=list)

    # -- queries -------------------------------------------------------------------------------------------------

    def open_tx_on_evse(self, evse: int) -> TxB | None:
        for rec in self.transactions.values():
            if rec.phase == "open" and rec.evse == evse:
                return rec
        return None

    def by_tx_int(self, tx_int: int) -> TxB | None:
        for rec in self.transactions.values():
            if rec.tx_int == tx_int:
                return rec
        return None

    def has_open_transactions(self) -> bool:
        return any(rec.phase == "open" for rec in self.transactions.values())

    # -- (de)serialisation ---------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "setup": "B",
            "transactions": {k: v.to_dict() for k, v in self.transactions.items()},
            "pending_starts": [p.to_dict() for p in self.pending_starts],
            "next_remote_start_id": self.next_remote_start_id,
            "next_request_id": self.next_request_id,
            "connector_status": {k: dict(v) for k, v in self.connector_status.items()},
            "boot": self.boot,
            "boot_result": self.boot_result,
            "reset": self.reset,
            "log_request": self.log_request,
            "fw_request": self.fw_request,
            "aliases": dict(self.aliases),
            "id_types": dict(self.id_types),
            "variables": {k: dict(v) for k, v in self.variables.items()},
            "status_triggers": [dict(t) for t in self.status_triggers],
        }

    def to_json(self) -> bytes:
        """:meth:`to_dict` as JSON text (what the store keeps), in one ``orjson.dumps`` of the state's own members:
        orjson writes the records (dataclasses: every field, in order, as :meth:`TxB.to_dict` and
        :meth:`PendingStart.to_dict` list them) and nothing needs the copies :meth:`to_dict` makes, the text being
        taken at once. Raises ``orjson.JSONEncodeError`` for what orjson cannot write, as
        ``orjson.dumps(to_dict())`` does."""
        return orjson.dumps(
            {
                "setup": "B",
                "transactions": self.transactions,
                "pending_starts": self.pending_starts,
                "next_remote_start_id": self.next_remote_start_id,
                "next_request_id": self.next_request_id,
                "connector_status": self.connector_status,
                "boot": self.boot,
                "boot_result": self.boot_result,
                "reset": self.reset,
                "log_request": self.log_request,
                "fw_request": self.fw_request,
                "aliases": self.aliases,
                "id_types": self.id_types,
                "variables": self.variables,
                "status_triggers": self.status_triggers,
            }
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReverseState:
        txs = data.get("transactions")
        pending = data.get("pending_starts")
        status = data.get("connector_status")
        aliases = data.get("aliases")
        id_types = data.get("id_types")
        variables = data.get("variables")
        triggers = data.get("status_triggers")
        return cls(
            transactions={str(k): TxB.from_dict(v) for k, v in txs.items() if isinstance(v, Mapping)}
            if isinstance(txs, Mapping)
            else {},
            pending_starts=[PendingStart.from_dict(p) for p in pending if isinstance(p, Mapping)]
            if isinstance(pending, list)
            else [],
            next_remote_start_id=_int(data.get("next_remote_start_id")) or 1,
            next_request_id=_int(data.get("next_request_id")) or 1,
            connector_status={str(k): dict(v) for k, v in status.items() if isinstance(v, Mapping)}
            if isinstance(status, Mapping)
            else {},
            boot=_dict(data.get("boot")),
            boot_result=_dict(data.get("boot_result")),
            reset=_dict(data.get("reset")),
            log_request=_dict(data.get("log_request")),
            fw_request=_dict(data.get("fw_request")),
            aliases={str(k): str(v) for k, v in aliases.items()} if isinstance(aliases, Mapping) else {},
            id_types={str(k): str(v) for k, v in id_types.items()} if isinstance(id_types, Mapping) else {},
            variables={str(k): dict(v) for k, v in variables.items() if isinstance(v, Mapping)}
            if isinstance(variables, Mapping)
            else {},
            status_triggers=[dict(t) for t in triggers if isinstance(t, Mapping)] if isinstance(triggers, list) else [],
        )
