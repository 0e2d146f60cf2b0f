"""Translation state of one charger: every identifier and record a translator must remember.

Shape follows ocpp-translation.md §1.3. One :class:`TranslationState` per charger; the session persists
``to_dict()`` (write-ahead, before a translated frame leaves) and rebuilds it with ``from_dict()`` on reconnect or
restart. The dict is plain JSON (str keys, no tuples, no datetimes) and stable across versions of this module:
``from_dict`` tolerates missing keys (defaults) and ignores unknown ones, so adding a field never breaks a stored
state.

Used by set-up A (1.6 charger, 2.0.1 CSMS). Fields are deliberately plain so that set-up B can share the record
types where they apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from operator import attrgetter
from typing import Any, Literal

import orjson

from gateway.ocpp.jsontext import right_sized

__all__ = ["PendingRemoteStart", "Records", "TranslationState", "TxRecord"]

TxPhase = Literal["open", "ending", "ended"]


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _dict_or_none(value: object) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, Mapping) else None


@dataclass(slots=True)
class TxRecord:
    """One transaction, keyed in the state by the charger's 1.6 integer ``transactionId``."""

    tx201: str  # the 2.0.1 transactionId the CSMS knows
    evse: int | None = None  # None: unknown (synthesised Started without a connector)
    connector: int | None = None  # the 1.6 connectorId
    id_token: str | None = None
    id_token_type: str | None = None
    seq_no: int = 0  # the seqNo the next TransactionEvent of this transaction gets
    meter_start_wh: int | None = None
    started_at: str | None = None
    remote_start_id: int | None = None
    reservation_id: int | None = None
    charging_state: str | None = None  # last chargingState told to the CSMS
    phase: TxPhase = "open"
    offline: bool = False  # Started was flagged offline: every later event is too
    dedup: str | None = None  # de-duplication key of the StartTransaction that opened it
    started_event: dict[str, Any] | None = None  # the Started TransactionEvent as sent (re-sent on retries)
    started_acked: bool = False
    start_result: dict[str, Any] | None = None  # StartTransaction.conf sent to the charger (for retries)
    ended_event: dict[str, Any] | None = None  # the Ended TransactionEvent as sent (re-sent while `ending`)
    ended_result: dict[str, Any] | None = None  # StopTransaction.conf sent to the charger (for retries)
    ended_at: str | None = None
    #: the last :meth:`to_dict`, until a field is set again (not a field of the record: not stored, not compared)
    _snapshot: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)
    #: the last :meth:`to_json`, the same way
    _json: bytes | None = field(default=None, init=False, repr=False, compare=False)
    #: the text cell of the :class:`Records` that holds it (set when it is put there): emptied when a field is set
    _owner: _Cell | None = field(default=None, init=False, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name not in _CACHES:
            object.__setattr__(self, "_snapshot", None)
            object.__setattr__(self, "_json", None)
            owner = getattr(self, "_owner", None)  # not there yet while the dataclass __init__ sets the fields
            if owner is not None:
                owner.text = None

    def to_json(self) -> bytes:
        """:meth:`to_dict` as JSON text, kept until a field is set again (the state's :meth:`TranslationState.to_json`
        encodes only the records that changed). Kept right-sized: orjson's own buffer is ~4 kB for any text."""
        text = self._json
        if text is None:
            text = right_sized(orjson.dumps(self.to_dict()))
            object.__setattr__(self, "_json", text)
        return text

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON, field by field; the same dict again while no field was set since (every field is a scalar or
        a recorded dict that is never changed in place, below), so that a snapshot of the whole state rebuilds only
        the records that changed: a charger's transactions are snapshotted twice per translated round trip, and
        one MeterValues changes one of them (its ``seq_no``). The dict is shared with the snapshot and must not be
        changed either (the store copies what it keeps, ``from_dict`` copies what it reads).

        The recorded events and answers (``started_event``, ``start_result``, ``ended_event``, ``ended_result``) are
        shared with the snapshot, not copied: once recorded they are never changed in place (the handlers send and
        answer deep copies, and replace a record's dict rather than edit it). ``dataclasses.asdict`` deep-copied
        them on every snapshot — twice per translated round trip, for every transaction kept (ended ones for 7
        days) — which made the CPU cost per message grow with the charger's history (~20 ms per round trip with
        100 finished transactions; ``bench/translate_cost.py --history 100``).
        """
        snap = self._snapshot
        if snap is None:
            snap = dict(zip(_TX_FIELDS, _tx_values(self), strict=True))
            object.__setattr__(self, "_snapshot", snap)
        return snap

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TxRecord:
        phase = data.get("phase")
        return cls(
            tx201=str(data.get("tx201", "")),
            evse=_int_or_none(data.get("evse")),
            connector=_int_or_none(data.get("connector")),
            id_token=_str_or_none(data.get("id_token")),
            id_token_type=_str_or_none(data.get("id_token_type")),
            seq_no=_int_or_none(data.get("seq_no")) or 0,
            meter_start_wh=_int_or_none(data.get("meter_start_wh")),
            started_at=_str_or_none(data.get("started_at")),
            remote_start_id=_int_or_none(data.get("remote_start_id")),
            reservation_id=_int_or_none(data.get("reservation_id")),
            charging_state=_str_or_none(data.get("charging_state")),
            phase=phase if phase in ("open", "ending", "ended") else "open",
            offline=bool(data.get("offline", False)),
            dedup=_str_or_none(data.get("dedup")),
            started_event=_dict_or_none(data.get("started_event")),
            started_acked=bool(data.get("started_acked", False)),
            start_result=_dict_or_none(data.get("start_result")),
            ended_event=_dict_or_none(data.get("ended_event")),
            ended_result=_dict_or_none(data.get("ended_result")),
            ended_at=_str_or_none(data.get("ended_at")),
        )


_TX_FIELDS = tuple(f.name for f in fields(TxRecord) if f.init)
_CACHES = frozenset({"_snapshot", "_json", "_owner"})


class _Cell:
    """The text a :class:`Records` keeps, shared with its records, which empty it when a field is set. A copy is
    empty: an ``orjson.Fragment`` cannot be copied, and a copied state builds its text again."""

    __slots__ = ("text",)

    def __init__(self) -> None:
        self.text: orjson.Fragment | None = None

    def __copy__(self) -> _Cell:
        return _Cell()

    def __deepcopy__(self, memo: dict[int, Any]) -> _Cell:
        return _Cell()


class Records(dict[int, TxRecord]):
    """The transactions of a state (1.6 transactionId -> record), with the JSON text of them all kept until one is
    put, removed or has a field set (:meth:`TxRecord.__setattr__` empties the cell): a step that changed no
    transaction (a Heartbeat, the answer to a MeterValues) writes the state's text without building that part
    again, which was a quarter of a translating gateway's CPU on the wire with the shared load's 32 transactions
    per charger (py-spy). The records' recorded dicts are never changed in place (:meth:`TxRecord.to_dict`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.cell = _Cell()
        self.update(*args, **kwargs)

    def _cell(self) -> _Cell:
        cell: _Cell | None = self.__dict__.get("cell")  # a copy made without __init__ gets its own here
        if cell is None:
            cell = self.cell = _Cell()
        return cell

    @property
    def text(self) -> orjson.Fragment | None:
        """The ``orjson.Fragment`` of every record, or None when it must be built again."""
        return self._cell().text

    def __setitem__(self, key: int, rec: TxRecord) -> None:
        cell = self._cell()
        object.__setattr__(rec, "_owner", cell)
        cell.text = None
        super().__setitem__(key, rec)

    def __delitem__(self, key: int) -> None:
        self._cell().text = None
        super().__delitem__(key)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, rec in dict(*args, **kwargs).items():
            self[key] = rec

    def setdefault(self, key: int, default: TxRecord | None = None) -> TxRecord:
        if key not in self:
            assert default is not None
            self[key] = default
        return self[key]

    def pop(self, key: int, *default: Any) -> Any:
        self._cell().text = None
        return super().pop(key, *default)

    def popitem(self) -> tuple[int, TxRecord]:
        self._cell().text = None
        return super().popitem()

    def clear(self) -> None:
        self._cell().text = None
        super().clear()

    def __ior__(self, other: Any) -> Records:  # type: ignore[override,misc]
        self.update(other)
        return self

    def fragment(self) -> orjson.Fragment:
        """Every record's text as one JSON object (keys as strings), kept until a record changes."""
        cell = self._cell()
        text = cell.text
        if text is None:
            text = cell.text = _fragment_of(self)
        return text


def _fragment_of(transactions: Mapping[int, TxRecord]) -> orjson.Fragment:
    fragment = orjson.Fragment
    text = orjson.dumps({k: fragment(rec.to_json()) for k, rec in transactions.items()}, option=orjson.OPT_NON_STR_KEYS)
    return fragment(right_sized(text))  # kept by Records until a record changes


def _records_fragment(transactions: dict[int, TxRecord]) -> orjson.Fragment:
    """The text of a state's transactions: kept by :class:`Records`, built each time for a plain dict (a state
    made with one)."""
    return transactions.fragment() if type(transactions) is Records else _fragment_of(transactions)


_tx_values = attrgetter(*_TX_FIELDS)


@dataclass(slots=True)
class PendingRemoteStart:
    """A remote start the charger accepted (or is being asked), waiting for its StartTransaction."""

    remote_start_id: int
    id_token: str
    id_token_type: str
    evse: int | None  # None: any EVSE (the "*" entry)
    expires_at: str  # ISO timestamp

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PendingRemoteStart:
        return cls(
            remote_start_id=_int_or_none(data.get("remote_start_id")) or 0,
            id_token=str(data.get("id_token", "")),
            id_token_type=str(data.get("id_token_type", "ISO14443")),
            evse=_int_or_none(data.get("evse")),
            expires_at=str(data.get("expires_at", "")),
        )


@dataclass(slots=True)
class TranslationState:
    """Everything a translator remembers about one charger (§1.3)."""

    next_tx_int: int = 0  # 0: not initialised yet (first allocation seeds it from the clock)
    transactions: dict[int, TxRecord] = field(default_factory=Records)
    pending_remote_starts: list[PendingRemoteStart] = field(default_factory=list)
    id_types: dict[str, str] = field(default_factory=dict)  # idTag -> 2.0.1 IdTokenEnumType
    log_request: dict[str, Any] | None = None  # {requestId, logType, at}
    fw_request: dict[str, Any] | None = None  # {requestId, at, signed}
    reset: dict[str, Any] | None = None  # {type, sentAs, at, deferred}
    trigger: dict[str, Any] | None = None  # {requestedMessage, evse, at}
    connector_status: dict[int, dict[str, Any]] = field(default_factory=dict)  # 1.6 connectorId -> {status, ...}
    boot: dict[str, Any] | None = None  # last 1.6 BootNotification payload
    boot_result: dict[str, Any] | None = None  # its answer as given to the charger
    config: dict[str, dict[str, Any]] = field(default_factory=dict)  # 1.6 key -> {value, readonly}
    next_event_id: int = 1  # NotifyEvent eventId counter
    schedule_ids: dict[int, int] = field(default_factory=dict)  # chargingProfileId -> 2.0.1 chargingSchedule id

    # -- queries -------------------------------------------------------------------------------------------------

    def open_tx_on_connector(self, connector: int) -> tuple[int, TxRecord] | None:
        for tx_int, rec in self.transactions.items():
            if rec.phase == "open" and rec.connector == connector:
                return tx_int, rec
        return None

    def open_tx_on_evse(self, evse: int) -> tuple[int, TxRecord] | None:
        for tx_int, rec in self.transactions.items():
            if rec.phase == "open" and rec.evse == evse:
                return tx_int, rec
        return None

    def by_tx201(self, tx201: str) -> tuple[int, TxRecord] | None:
        for tx_int, rec in self.transactions.items():
            if rec.tx201 == tx201:
                return tx_int, rec
        return None

    def has_open_transactions(self) -> bool:
        return any(rec.phase != "ended" for rec in self.transactions.values())

    # -- (de)serialisation ---------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: integer map keys become strings."""
        return {
            "next_tx_int": self.next_tx_int,
            "transactions": {str(k): v.to_dict() for k, v in self.transactions.items()},
            "pending_remote_starts": [asdict(p) for p in self.pending_remote_starts],
            "id_types": dict(self.id_types),
            "log_request": self.log_request,
            "fw_request": self.fw_request,
            "reset": self.reset,
            "trigger": self.trigger,
            "connector_status": {str(k): dict(v) for k, v in self.connector_status.items()},
            "boot": self.boot,
            "boot_result": self.boot_result,
            "config": {k: dict(v) for k, v in self.config.items()},
            "next_event_id": self.next_event_id,
            "schedule_ids": {str(k): v for k, v in self.schedule_ids.items()},
        }

    def to_json(self) -> bytes:
        """:meth:`to_dict` as JSON text (what the store keeps), in one ``orjson.dumps`` without :meth:`to_dict`'s
        copies (integer keys written as strings by ``OPT_NON_STR_KEYS``, as :meth:`to_dict` writes them) and with
        the transactions' text as :class:`Records` keeps it (each record's as the record keeps it): a snapshot
        re-encodes the records that changed, and none when none did (a charger of the shared load keeps 32, ~22 kB).
        Raises ``orjson.JSONEncodeError`` for what orjson cannot write, as ``orjson.dumps(to_dict())`` does (the
        payloads it holds came from orjson: their keys are strings)."""
        return orjson.dumps(
            {
                "next_tx_int": self.next_tx_int,
                "transactions": _records_fragment(self.transactions),
                "pending_remote_starts": [asdict(p) for p in self.pending_remote_starts],
                "id_types": self.id_types,
                "log_request": self.log_request,
                "fw_request": self.fw_request,
                "reset": self.reset,
                "trigger": self.trigger,
                "connector_status": self.connector_status,
                "boot": self.boot,
                "boot_result": self.boot_result,
                "config": self.config,
                "next_event_id": self.next_event_id,
                "schedule_ids": self.schedule_ids,
            },
            option=orjson.OPT_NON_STR_KEYS,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TranslationState:
        """Inverse of :meth:`to_dict`; missing keys take their defaults, unknown keys are ignored."""

        def int_keyed(value: object) -> dict[int, Any]:
            out: dict[int, Any] = {}
            if isinstance(value, Mapping):
                for k, v in value.items():
                    try:
                        out[int(k)] = v
                    except (TypeError, ValueError):
                        continue
            return out

        txs = Records(
            {k: TxRecord.from_dict(v) for k, v in int_keyed(data.get("transactions")).items() if isinstance(v, Mapping)}
        )
        pending = [
            PendingRemoteStart.from_dict(p) for p in data.get("pending_remote_starts") or [] if isinstance(p, Mapping)
        ]
        id_types = data.get("id_types")
        config = data.get("config")
        return cls(
            next_tx_int=_int_or_none(data.get("next_tx_int")) or 0,
            transactions=txs,
            pending_remote_starts=pending,
            id_types={str(k): str(v) for k, v in id_types.items()} if isinstance(id_types, Mapping) else {},
            log_request=_dict_or_none(data.get("log_request")),
            fw_request=_dict_or_none(data.get("fw_request")),
            reset=_dict_or_none(data.get("reset")),
            trigger=_dict_or_none(data.get("trigger")),
            connector_status={
                k: dict(v) for k, v in int_keyed(data.get("connector_status")).items() if isinstance(v, Mapping)
            },
            boot=_dict_or_none(data.get("boot")),
            boot_result=_dict_or_none(data.get("boot_result")),
            config={str(k): dict(v) for k, v in config.items() if isinstance(v, Mapping)}
            if isinstance(config, Mapping)
            else {},
            next_event_id=_int_or_none(data.get("next_event_id")) or 1,
            schedule_ids={k: v for k, v in int_keyed(data.get("schedule_ids")).items() if isinstance(v, int)},
        )
