"""Options and the shared context of the 1.6-charger / 2.0.1-CSMS translator.

:class:`Options` are the charger's capabilities (static configuration, the same on every replica, never in the
store). :class:`Context` bundles options, the persisted :class:`TranslationState`, the injected clock and id
factory, and the small helpers every handler needs (EVSE map, idTag <-> idToken, transaction ids, seqNo, offline
flag, status info, drop accounting).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from gateway.translate.base import JsonDict, forward, local
from gateway.translate.state import TranslationState, TxRecord

__all__ = ["Context", "Options", "fmt_ts", "forward", "id_tag_info", "local", "parse_ts", "status_info", "utc_now"]

# 1.6 transaction ids are seeded from the seconds elapsed since this instant (§1.3 "Integer allocation").
TX_INT_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
OFFLINE_GRACE = timedelta(seconds=60)
ENDED_RETENTION = timedelta(days=7)
BOOT_AFTER_RESET = timedelta(minutes=10)
TRIGGER_TTL = timedelta(seconds=60)


def utc_now() -> str:
    """Default clock: UTC, millisecond precision, ``Z`` suffix (§1.6)."""
    return fmt_ts(datetime.now(UTC))


def fmt_ts(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_ts(text: object) -> datetime | None:
    """An aware datetime, or None when ``text`` is not an ISO timestamp (naive ones are taken as UTC)."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def status_info(reason: str, info: str | None = None) -> JsonDict:
    """2.0.1 ``statusInfo`` for the translator's own refusals (reasonCode <= 20, additionalInfo <= 512)."""
    out: JsonDict = {"reasonCode": reason[:20]}
    if info:
        out["additionalInfo"] = info[:512]
    return out


@dataclass(frozen=True, slots=True)
class Options:
    """What the gateway's configuration says about one charger (model)."""

    # 1.6 connectorId -> (2.0.1 evse.id, evse.connectorId); empty: N <-> (N, 1) for every N >= 1 (§1.4)
    connector_map: Mapping[int, tuple[int, int]] = field(default_factory=dict)
    security_extension: bool = False  # the 1.6 "Improved security" messages are available
    default_id_token_type: str = "ISO14443"  # §1.5
    free_vend_idtag: str | None = None  # idTag used for 2.0.1 NoAuthorization tokens; None: refuse them
    allow_unsigned_firmware: bool = False  # §3.11
    reset_immediate_as: Literal["Hard", "Soft"] = "Hard"  # §3.3
    report_items_per_message: int = 100  # §3.6
    get_configuration_max_keys: int | None = None  # else taken from the GetConfigurationMaxKeys snapshot
    remote_start_ttl_s: int = 180  # §1.3 pending remote starts
    attach_untagged_samples_to_open_tx: bool = False  # §2.6
    meter_public_key: str = ""  # §2.7 signed meter values
    signed_encoding_method: str = ""
    signed_signing_method: str = ""
    connector_types: Mapping[int, str] = field(default_factory=dict)  # 1.6 connectorId -> 2.0.1 ConnectorEnumType


@dataclass(slots=True)
class Context:
    """Per-charger translation context; handlers read and update ``state`` through it."""

    state: TranslationState
    options: Options
    now: Callable[[], str] = utc_now
    new_tx_id: Callable[[], str] = field(default=lambda: str(uuid.uuid4()))
    session_started_at: str = ""
    dropped: list[tuple[str, str]] = field(default_factory=list)
    #: (``session_started_at``, the moment before which an event is offline), parsed once per session start
    _offline_before: tuple[str, datetime | None] = field(default=("", None), init=False, repr=False, compare=False)

    # -- bookkeeping of losses (§1.1 rule 9) ---------------------------------------------------------------------

    def drop(self, action: str, what: str) -> None:
        """Record a dropped field/sample/message; the session drains ``dropped`` into its metrics."""
        self.dropped.append((action, what))

    # -- connector <-> EVSE (§1.4) -------------------------------------------------------------------------------

    def evse_of(self, connector: int) -> tuple[int, int]:
        """(evse.id, evse.connectorId) of a 1.6 connector >= 1."""
        return self.options.connector_map.get(connector, (connector, 1))

    def connectors_of(self, evse: int) -> list[int]:
        """Every 1.6 connector of an EVSE (with the default map: the connector of the same number)."""
        if self.options.connector_map:
            return sorted(c for c, (e, _) in self.options.connector_map.items() if e == evse)
        return [evse] if evse >= 1 else []

    def connector_of(self, evse: int, connector_id: int | None) -> int | None:
        """The 1.6 connector for (evse, connectorId); with no connectorId only when the EVSE has exactly one."""
        if evse == 0:
            return 0
        if connector_id is None:
            found = self.connectors_of(evse)
            return found[0] if len(found) == 1 else None
        for c in self.connectors_of(evse):
            if self.evse_of(c) == (evse, connector_id):
                return c
        return None

    # -- idTag <-> idToken (§1.5) --------------------------------------------------------------------------------

    def id_token(self, id_tag: str) -> JsonDict:
        return {"idToken": id_tag, "type": self.state.id_types.get(id_tag, self.options.default_id_token_type)}

    def id_tag_of(self, id_token: Mapping[str, Any]) -> str | None:
        """The 1.6 idTag for a 2.0.1 idToken, remembering its type; None when it cannot be expressed (> 20)."""
        token = str(id_token.get("idToken", ""))
        kind = str(id_token.get("type", self.options.default_id_token_type))
        if kind == "NoAuthorization" and not token:
            if self.options.free_vend_idtag is None:
                return None
            token = self.options.free_vend_idtag
        if not token or len(token) > 20:
            return None
        self.state.id_types[token] = kind
        return token

    # -- transactions --------------------------------------------------------------------------------------------

    def alloc_tx_int(self) -> int:
        """Next 1.6 transactionId; the first one is seeded from the clock (§1.3)."""
        if self.state.next_tx_int <= 0:
            moment = parse_ts(self.now()) or datetime.now(UTC)
            self.state.next_tx_int = max(1, int((moment - TX_INT_EPOCH).total_seconds()))
        while self.state.next_tx_int in self.state.transactions:
            self.state.next_tx_int += 1
        value = self.state.next_tx_int
        self.state.next_tx_int += 1
        return value

    def take_seq(self, rec: TxRecord) -> int:
        seq = rec.seq_no
        rec.seq_no += 1
        return seq

    def is_offline(self, timestamp: object) -> bool:
        """§1.6: earlier than the start of this WebSocket session minus 60 s."""
        started, before = self._offline_before
        if started != self.session_started_at or not started:
            start = parse_ts(self.session_started_at)
            before = None if start is None else start - OFFLINE_GRACE
            self._offline_before = (self.session_started_at, before)
        if before is None:
            return False
        moment = parse_ts(timestamp)
        return moment is not None and moment < before

    def next_event_id(self) -> int:
        value = self.state.next_event_id
        self.state.next_event_id += 1
        return value

    def prune(self) -> None:
        """Forget ended transactions after their retention and expired pending remote starts / triggers.

        Called before every translated CALL: with nothing that could expire (the common case: open transactions
        only) it returns before it reads the clock (formatting and parsing the time was 6 % of a translated
        MeterValues round trip, ``bench/translate_cost.py``)."""
        state = self.state
        ended_txs = [(tx_int, rec) for tx_int, rec in state.transactions.items() if rec.phase == "ended"]
        if not ended_txs and not state.pending_remote_starts and state.trigger is None:
            return
        now = parse_ts(self.now())
        if now is None:
            return
        for tx_int, rec in ended_txs:
            ended = parse_ts(rec.ended_at)
            if ended is not None and now - ended > ENDED_RETENTION:
                del state.transactions[tx_int]
        if state.pending_remote_starts:
            state.pending_remote_starts = [
                p for p in state.pending_remote_starts if (parse_ts(p.expires_at) or now) >= now
            ]
        trigger_at = parse_ts((self.state.trigger or {}).get("at"))
        if trigger_at is not None and now - trigger_at > TRIGGER_TTL:
            self.state.trigger = None

    def since(self, record: Mapping[str, Any] | None, limit: timedelta) -> bool:
        """Whether ``record['at']`` lies within ``limit`` before now."""
        if not record:
            return False
        at, now = parse_ts(record.get("at")), parse_ts(self.now())
        return at is not None and now is not None and now - at <= limit


_TAG_STATUS = frozenset({"Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"})


def id_tag_info(ctx: Context, action: str, info: Mapping[str, Any]) -> JsonDict:
    """2.0.1 ``idTokenInfo`` -> 1.6 ``idTagInfo`` (§2.4); also used, reversed in direction, by SendLocalList."""
    status = str(info.get("status", "Invalid"))
    out: JsonDict = {"status": status if status in _TAG_STATUS else "Invalid"}
    if "cacheExpiryDateTime" in info:
        out["expiryDate"] = info["cacheExpiryDateTime"]
    group = info.get("groupIdToken")
    if isinstance(group, Mapping):
        parent = str(group.get("idToken", ""))
        if 0 < len(parent) <= 20:
            out["parentIdTag"] = parent
        else:
            ctx.drop(action, "parent_id_too_long")
    for name in ("evseId", "chargingPriority", "language1", "language2", "personalMessage"):
        if name in info:
            ctx.drop(action, name)
    return out
