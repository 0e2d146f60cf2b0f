"""Options and the shared context of the 2.0.1-charger / 1.6-CSMS translator (set-up B).

:class:`Options` are static configuration (``backends.<name>.translation`` in the gateway's YAML; the same on every
replica, never in the store). :class:`Context` bundles options, the persisted :class:`ReverseState`, the injected
clock, and the helpers every handler needs: EVSE <-> connector map, idToken <-> idTag (with the long-token policy),
the gateway's own counters (remoteStartId, requestId), drop accounting and the "ack + wrap" DataTransfer.

Decisions (ocpp-translation.md §1.4, §1.5, §4.1):

* EVSE map: 2.0.1 (evse N, connector 1) <-> 1.6 connector N unless ``connector_map`` says otherwise; EVSE 0 (the
  whole station) <-> connector 0. A (evse, connector) pair the map does not know is not translated (None).
* idTokens longer than 20 characters (the 1.6 ``idTag`` limit) follow ``long_id_tokens``:
  ``reject`` (default): the message that carries it is refused in-band (Authorize -> ``Invalid``; a transaction is
  never started on the CSMS with it), counted ``idtoken_too_long``. ``alias``: the token is replaced by a stable
  alias, ``#`` + the first 19 characters of the base32 SHA-256 of ``<type>:<idToken>`` (upper case, so it survives
  1.6's case-insensitive CiString comparison); the same token always yields the same alias on every replica, the
  operator registers the alias in the 1.6 CSMS (``ocpp-gateway id-alias TOKEN [TYPE]`` prints it), and an alias the
  CSMS sends back (RemoteStart, SendLocalList, ReserveNow) is turned back into the original token from the store.
  Never truncated. Counted ``idtoken_aliased``.
* ``NoAuthorization`` tokens (free vend, empty idToken): the configured ``free_vend_idtag`` stands in; without one
  they are refused like a token that does not fit.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from gateway.translate.base import JsonDict, OutCall, compact, forward, local
from gateway.translate.v16_v201.context import fmt_ts, parse_ts, utc_now  # the same clock format both ways
from gateway.translate.v201_v16.state import ReverseState

__all__ = [
    "WRAP_VENDOR_ID",
    "Context",
    "Options",
    "compact",
    "fmt_ts",
    "forward",
    "id_alias",
    "id_token_info",
    "local",
    "parse_ts",
    "utc_now",
]

WRAP_VENDOR_ID = "org.openchargealliance.ocpp201"  # §5.1 "ack + wrap" toward a 1.6 CSMS
ENDED_RETENTION = timedelta(days=7)
IDTAG_MAX = 20
TRIGGER_TTL = timedelta(seconds=60)  # a StatusNotification trigger (the reference's "trigger in flight", §1.3)
TRIGGERS_KEPT = 16


def id_alias(id_token: str, kind: str = "ISO14443") -> str:
    """The stable 20-character 1.6 idTag standing for a 2.0.1 idToken that does not fit (``long_id_tokens: alias``)."""
    digest = hashlib.sha256(f"{kind}:{id_token}".encode()).digest()
    return "#" + base64.b32encode(digest).decode("ascii")[: IDTAG_MAX - 1]


LongIdTokens = Literal["reject", "alias"]
SoftResetAs = Literal["Immediate", "OnIdle"]


@dataclass(frozen=True, slots=True)
class Options:
    """What the configuration says about a 1.6 backend that 2.0.1 chargers are translated to."""

    # 1.6 connectorId -> (2.0.1 evse.id, evse.connectorId); empty: N <-> (N, 1) for every N >= 1 (§1.4)
    connector_map: Mapping[int, tuple[int, int]] = field(default_factory=dict)
    security_extension: bool = False  # the 1.6 CSMS implements the "Improved security" messages
    wrap_untranslatable: bool = False  # §5.1 ack + wrap (DataTransfer) instead of ack + drop
    default_id_token_type: str = "ISO14443"  # idTags from the CSMS that the gateway never saw as idTokens
    long_id_tokens: LongIdTokens = "reject"
    free_vend_idtag: str | None = None  # 1.6 idTag for 2.0.1 NoAuthorization tokens; None: refuse them
    soft_reset_as: SoftResetAs = "Immediate"  # §4.4 Reset Soft
    remote_start_ttl_s: int = 180
    variables_per_message: int = 20  # GetVariables items per CALL (the charger's ItemsPerMessage; decision)
    charge_point_vendor: str | None = None  # BootNotification chargePointVendor override

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> Options:
        """From ``backends.<name>.translation`` (already validated by the config loader)."""
        if not data:
            return cls()
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known}
        if "connector_map" in values:
            values["connector_map"] = {int(k): (int(v[0]), int(v[1])) for k, v in values["connector_map"].items()}
        return cls(**values)


@dataclass(slots=True)
class Context:
    """Per-charger translation context; handlers read and update ``state`` through it."""

    state: ReverseState
    options: Options
    now: Callable[[], str] = utc_now
    session_started_at: str = ""
    dropped: list[tuple[str, str]] = field(default_factory=list)

    # -- losses (§1.1 rule 9) ------------------------------------------------------------------------------------

    def drop(self, action: str, what: str) -> None:
        """Record a dropped field/sample/message; the session drains ``dropped`` into its metrics."""
        self.dropped.append((action, what))

    # -- EVSE <-> connector (§1.4) -------------------------------------------------------------------------------

    def connector_of(self, evse: int, connector_id: int | None = None) -> int | None:
        """The 1.6 connectorId of a 2.0.1 (evse, connectorId); EVSE 0 is connector 0; None when not mapped."""
        if evse == 0:
            return 0
        if not self.options.connector_map:
            return evse if evse >= 1 and connector_id in (None, 1) else None
        matches = [c for c, (e, k) in self.options.connector_map.items() if e == evse and connector_id in (None, k)]
        return min(matches) if matches else None

    def evse_of(self, connector: int) -> tuple[int, int]:
        """(evse.id, evse.connectorId) of a 1.6 connector >= 1."""
        return self.options.connector_map.get(connector, (connector, 1))

    # -- idToken <-> idTag (§1.5) --------------------------------------------------------------------------------

    def id_tag_of(self, action: str, id_token: Mapping[str, Any]) -> str | None:
        """The 1.6 idTag for a 2.0.1 idToken; None when it cannot be expressed (counted). Remembers its type."""
        token = str(id_token.get("idToken", ""))
        kind = str(id_token.get("type", self.options.default_id_token_type))
        if kind == "NoAuthorization" and not token:
            if self.options.free_vend_idtag is None:
                self.drop(action, "free_vend_refused")
                return None
            return self.options.free_vend_idtag
        if not token:
            return None
        if len(token) > IDTAG_MAX:
            if self.options.long_id_tokens != "alias":
                self.drop(action, "idtoken_too_long")
                return None
            alias = id_alias(token, kind)
            self.state.aliases[alias] = token
            self.state.id_types[alias] = kind
            self.drop(action, "idtoken_aliased")
            return alias
        if self.state.id_types.get(token) != kind:
            self.state.id_types[token] = kind
        return token

    def id_token_of(self, id_tag: str) -> JsonDict:
        """The 2.0.1 idToken for a 1.6 idTag from the CSMS (an alias turns back into its token)."""
        kind = self.state.id_types.get(id_tag, self.options.default_id_token_type)
        return {"idToken": self.state.aliases.get(id_tag, id_tag), "type": kind}

    # -- the gateway's own identifiers ---------------------------------------------------------------------------

    def take_remote_start_id(self) -> int:
        value = self.state.next_remote_start_id
        self.state.next_remote_start_id += 1
        return value

    def take_request_id(self) -> int:
        value = self.state.next_request_id
        self.state.next_request_id += 1
        return value

    # -- time ----------------------------------------------------------------------------------------------------

    def prune(self) -> None:
        """Forget ended transactions after their retention and expired pending remote starts.

        Called before every translated CALL: with nothing that could expire (open transactions only, no pending
        start, no status trigger: the common case) it returns before it reads the clock, as set-up A's does
        (formatting and parsing the time was ~7 % of a translated TransactionEvent round trip, py-spy over
        ``bench/translate_cost.py --setup B``)."""
        state = self.state
        if (
            not state.pending_starts
            and not state.status_triggers
            and all(rec.phase != "ended" for rec in state.transactions.values())
        ):
            return
        now = parse_ts(self.now())
        if now is None:
            return
        for key, rec in list(self.state.transactions.items()):
            ended = parse_ts(rec.ended_at)
            if rec.phase == "ended" and ended is not None and now - ended > ENDED_RETENTION:
                del self.state.transactions[key]
        self.state.pending_starts = [p for p in self.state.pending_starts if (parse_ts(p.expires_at) or now) >= now]
        if self.state.status_triggers:
            self.state.status_triggers = [t for t in self.state.status_triggers if _within(t.get("at"), now)]

    def add_status_trigger(self, evse: int | None, connector_id: int | None) -> JsonDict:
        """Remember a TriggerMessage StatusNotification (``evse`` None: every connector), replacing an older one for
        the same target and keeping the newest :data:`TRIGGERS_KEPT`; the entry is returned (to undo it)."""
        entry: JsonDict = {"evse": evse, "connectorId": connector_id, "at": self.now(), "reported": []}
        kept = [t for t in self.state.status_triggers if (t.get("evse"), t.get("connectorId")) != (evse, connector_id)]
        self.state.status_triggers = [*kept, entry][-TRIGGERS_KEPT:]
        return entry

    def drop_status_trigger(self, entry: JsonDict) -> None:
        self.state.status_triggers = [t for t in self.state.status_triggers if t is not entry]

    def expires_in(self, seconds: float) -> str:
        return fmt_ts((parse_ts(self.now()) or datetime.now(UTC)) + timedelta(seconds=seconds))

    # -- §5.1 ack + wrap -----------------------------------------------------------------------------------------

    def wrap(self, action: str, payload: Mapping[str, Any]) -> OutCall:
        """DataTransfer carrying an untranslatable 2.0.1 message to the 1.6 CSMS."""
        return OutCall("DataTransfer", {"vendorId": WRAP_VENDOR_ID, "messageId": action, "data": compact(payload)})


def _within(at: object, now: datetime) -> bool:
    moment = parse_ts(at)
    return moment is not None and now - moment <= TRIGGER_TTL


def id_token_info(info: Mapping[str, Any]) -> JsonDict:
    """1.6 ``idTagInfo`` -> 2.0.1 ``idTokenInfo`` (§4.1 Authorize): the status names are the same in both."""
    out: JsonDict = {"status": str(info.get("status", "Invalid"))}
    if "expiryDate" in info:
        out["cacheExpiryDateTime"] = info["expiryDate"]
    parent = info.get("parentIdTag")
    if isinstance(parent, str) and parent:
        out["groupIdToken"] = {"idToken": parent, "type": "Central"}
    return out
