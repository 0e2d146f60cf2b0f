"""The ride-through answerer: what the gateway answers a charger's CALL on its CSMS's behalf while the CSMS is
unreachable, from the CSMS's own earlier answers only. Pure: no I/O, no clock of its own (``now`` is unix time).

Used by :mod:`gateway.app.ride` for routes with ``offline.mode: ride_through``; everything here speaks the
*backend's* OCPP version (the frames the gateway would have sent the CSMS: in a translated session, after
translation), so one table serves pass-through and both translations.

What is answered (:func:`answer`), per version (1.6; 2.0.1 and 2.1 alike):

* BootNotification: Accepted with the interval of the charger's last boot the CSMS accepted; never answered when
  the CSMS accepted none (the charger keeps retrying, as it would without the gateway).
* Heartbeat: the current time. StatusNotification, MeterValues and the notifications whose answer is empty
  (1.6 DiagnosticsStatusNotification, FirmwareStatusNotification; 2.x NotifyEvent, NotifyReport,
  SecurityEventNotification, FirmwareStatusNotification, LogStatusNotification): an empty confirmation.
* Authorize, StartTransaction (1.6) and a TransactionEvent with an idToken (2.x): the idTagInfo / idTokenInfo the
  CSMS last gave for that token (:class:`AuthEntry`), unless older than the cache's ``ttl_s`` or past its own
  ``expiryDate``; otherwise the unknown-token policy: ``reject`` (1.6 Invalid, 2.x Unknown) or ``accept_limited``
  (Accepted; the caller stops the transaction at the configured energy or duration). StartTransaction gets a
  gateway transaction id (:func:`gateway_transaction_id`, negative: never one a CSMS hands out); StopTransaction
  an empty confirmation, with the cached idTagInfo when the cache knows the tag.
* DataTransfer: per policy, Rejected (and not journalled) or Accepted (journalled).
* Anything else: None (the caller refuses it with a CALLERROR of the gateway's own, not journalled).

Also here: what the gateway learns from a live CSMS answer (:func:`learned`), how a replayed answer differs from
the one the gateway gave (:func:`divergence`), the CALL that enforces the CSMS's decision (:func:`enforcement`) and
the transaction id mapping of later messages (:func:`map_transaction_ids`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.offline.config import OfflineConfig

__all__ = [
    "Answer",
    "AuthEntry",
    "Learned",
    "answer",
    "divergence",
    "enforcement",
    "gateway_transaction_id",
    "learned",
    "map_transaction_ids",
    "token_key",
]

JsonDict = dict[str, Any]

_EMPTY_16 = frozenset(
    {"StatusNotification", "MeterValues", "DiagnosticsStatusNotification", "FirmwareStatusNotification"}
)
_EMPTY_2X = frozenset(
    {
        "StatusNotification",
        "MeterValues",
        "NotifyEvent",
        "NotifyReport",
        "SecurityEventNotification",
        "FirmwareStatusNotification",
        "LogStatusNotification",
    }
)
#: the versions the answerer speaks (2.0 has no schemas to hold its answers to: never answered)
VERSIONS = ("1.6", "2.0.1", "2.1")


@dataclass(frozen=True, slots=True)
class AuthEntry:
    """What the CSMS last said about one token: its idTagInfo (1.6) / idTokenInfo (2.x), and when (unix s)."""

    info: JsonDict
    at: float

    def to_json(self) -> JsonDict:
        return {"info": self.info, "at": self.at}

    @staticmethod
    def from_json(d: Any) -> AuthEntry | None:
        if not isinstance(d, dict) or not isinstance(d.get("info"), dict) or not isinstance(d.get("at"), int | float):
            return None
        return AuthEntry(d["info"], float(d["at"]))


@dataclass(frozen=True, slots=True)
class Answer:
    """The gateway's answer to one charger CALL."""

    payload: JsonDict
    #: journalled (and replayed) before it is answered; False: answered only (a DataTransfer refused by policy)
    journal: bool = True
    #: it starts a transaction (refused while the journal is over its bounds)
    starts: bool = False
    #: the token it decided on was unknown and accepted under ``accept_limited`` (the caller watches the limits)
    limited: bool = False


@dataclass(frozen=True, slots=True)
class Learned:
    """What a live CSMS answer teaches: token -> its info, and the boot interval (None: nothing)."""

    tokens: tuple[tuple[str, JsonDict], ...] = ()
    boot_interval: int | None = None


def iso(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def gateway_transaction_id(now: float) -> int:
    """A 1.6 transactionId of the gateway's own: negative (a CSMS hands out positive ids), from the millisecond
    clock (one charger cannot start two transactions within a millisecond: each waits for a journal write); it
    repeats after 24.8 days."""
    return -(int(now * 1000) % 2**31) or -1


def token_key(version: str, payload: Any) -> str | None:
    """The cache key of the token a payload names: the 1.6 ``idTag``, or ``<type>:<idToken>`` of a 2.x idToken."""
    if not isinstance(payload, dict):
        return None
    if version == "1.6":
        tag = payload.get("idTag")
        return tag if isinstance(tag, str) and tag else None
    tok = payload.get("idToken")
    if not isinstance(tok, dict) or not isinstance(tok.get("idToken"), str):
        return None
    return f"{tok.get('type')}:{tok['idToken']}"


def _valid(entry: AuthEntry | None, now: float, ttl_s: float) -> bool:
    if entry is None or now - entry.at > ttl_s:
        return False
    expiry = entry.info.get("cacheExpiryDateTime") or entry.info.get("expiryDate")
    if isinstance(expiry, str):
        try:
            at = datetime.fromisoformat(expiry.replace("Z", "+00:00"))
        except ValueError:
            return False
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        return at.timestamp() > now
    return True


def _decide(
    version: str, key: str | None, cache: dict[str, AuthEntry], now: float, policy: OfflineConfig
) -> tuple[JsonDict, bool]:
    """(idTagInfo / idTokenInfo, limited) for a token."""
    entry = cache.get(key) if key is not None else None
    if entry is not None and _valid(entry, now, policy.auth_cache_ttl_s):
        return dict(entry.info), False
    if policy.unknown_token == "accept_limited":
        return {"status": "Accepted"}, True
    return {"status": "Invalid" if version == "1.6" else "Unknown"}, False


def answer(
    version: str,
    action: str,
    payload: JsonDict,
    *,
    cache: dict[str, AuthEntry],
    boot_interval: int | None,
    now: float,
    policy: OfflineConfig,
) -> Answer | None:
    """The answer to a charger CALL (in the backend's ``version``), or None when the gateway cannot answer it
    truthfully."""
    if version == "1.6":
        if action == "Heartbeat":
            return Answer({"currentTime": iso(now)})
        if action in _EMPTY_16:
            return Answer({})
        if action == "BootNotification":
            if boot_interval is None:
                return None
            return Answer({"status": "Accepted", "currentTime": iso(now), "interval": boot_interval})
        if action == "Authorize":
            info, limited = _decide(version, token_key(version, payload), cache, now, policy)
            return Answer({"idTagInfo": info}, starts=True, limited=limited)
        if action == "StartTransaction":
            info, limited = _decide(version, token_key(version, payload), cache, now, policy)
            return Answer(
                {"idTagInfo": info, "transactionId": gateway_transaction_id(now)}, starts=True, limited=limited
            )
        if action == "StopTransaction":
            key = token_key(version, payload)
            entry = cache.get(key) if key is not None else None
            if entry is not None and _valid(entry, now, policy.auth_cache_ttl_s):
                return Answer({"idTagInfo": dict(entry.info)})
            return Answer({})
        if action == "DataTransfer":
            return _data_transfer(policy)
        return None
    if version not in VERSIONS:
        return None
    if action == "Heartbeat":
        return Answer({"currentTime": iso(now)})
    if action in _EMPTY_2X:
        return Answer({})
    if action == "BootNotification":
        if boot_interval is None:
            return None
        return Answer({"status": "Accepted", "currentTime": iso(now), "interval": boot_interval})
    if action == "Authorize":
        info, limited = _decide(version, token_key(version, payload), cache, now, policy)
        return Answer({"idTokenInfo": info}, starts=True, limited=limited)
    if action == "TransactionEvent":
        starts = payload.get("eventType") == "Started"
        key = token_key(version, payload)
        if key is None:
            return Answer({}, starts=starts)
        info, limited = _decide(version, key, cache, now, policy)
        return Answer({"idTokenInfo": info}, starts=starts, limited=limited)
    if action == "DataTransfer":
        return _data_transfer(policy)
    return None


def _data_transfer(policy: OfflineConfig) -> Answer:
    if policy.data_transfer == "accept":
        return Answer({"status": "Accepted"})
    return Answer({"status": "Rejected"}, journal=False)


def learned(version: str, action: str, call: JsonDict, result: JsonDict) -> Learned:
    """What the CSMS's CALLRESULT ``result`` to the charger's ``call`` teaches the cache."""
    if action == "BootNotification":
        interval = result.get("interval")
        if result.get("status") == "Accepted" and isinstance(interval, int) and not isinstance(interval, bool):
            return Learned(boot_interval=interval)
        return Learned()
    field = "idTagInfo" if version == "1.6" else "idTokenInfo"
    if action not in ("Authorize", "StartTransaction", "StopTransaction", "TransactionEvent"):
        return Learned()
    key = token_key(version, call)
    info = result.get(field)
    if key is None or not isinstance(info, dict) or not isinstance(info.get("status"), str):
        return Learned()
    return Learned(tokens=((key, info),))


def _status(answer: JsonDict, version: str) -> Any:
    info = answer.get("idTagInfo" if version == "1.6" else "idTokenInfo")
    return info.get("status") if isinstance(info, dict) else None


def divergence(version: str, action: str, answered: JsonDict, csms: JsonDict | None) -> str | None:
    """How the CSMS's answer (``csms``; None: a CALLERROR) to a replayed CALL differs from the one the gateway gave
    (``answered``): a bounded kind (``authorization``, ``boot``, ``data_transfer``, ``callerror``), or None."""
    if csms is None:
        return "callerror"
    if action in ("Authorize", "StartTransaction", "StopTransaction", "TransactionEvent"):
        mine, theirs = _status(answered, version), _status(csms, version)
        if mine is not None and theirs is not None and mine != theirs:
            return "authorization"
        if mine is not None and theirs is None and action in ("Authorize", "StartTransaction"):
            return "authorization"
        return None
    if action in ("BootNotification", "DataTransfer") and answered.get("status") != csms.get("status"):
        return "boot" if action == "BootNotification" else "data_transfer"
    return None


def enforcement(
    version: str, action: str, call: JsonDict, answered: JsonDict, csms: JsonDict
) -> tuple[str, JsonDict] | None:
    """The CALL to the charger that enforces the CSMS's refusal of a token the gateway accepted, for a transaction
    that may still run: (action, payload) in the backend's version, or None."""
    if _status(answered, version) != "Accepted" or _status(csms, version) in ("Accepted", None):
        return None
    if version == "1.6" and action == "StartTransaction":
        tx = answered.get("transactionId")
        if isinstance(tx, int):
            return "RemoteStopTransaction", {"transactionId": tx}
        return None
    if version != "1.6" and action == "TransactionEvent" and call.get("eventType") != "Ended":
        info = call.get("transactionInfo")
        tx = info.get("transactionId") if isinstance(info, dict) else None
        if isinstance(tx, str):
            return "RequestStopTransaction", {"transactionId": tx}
    return None


#: 1.6 messages that carry a transactionId the CSMS assigned, toward the CSMS (charger -> CSMS) and toward the charger
_TX_TO_CSMS = frozenset({"StopTransaction", "MeterValues"})
_TX_TO_CHARGER = frozenset({"RemoteStopTransaction", "SetChargingProfile"})


def map_transaction_ids(action: str, payload: JsonDict, mapping: dict[int, int], to_csms: bool) -> JsonDict | None:
    """``payload`` with its 1.6 transactionId replaced through ``mapping`` (gateway id -> CSMS id toward the CSMS,
    CSMS id -> gateway id toward the charger: the caller passes the right direction), or None when nothing
    changes."""
    if not mapping or action not in (_TX_TO_CSMS if to_csms else _TX_TO_CHARGER):
        return None
    if action == "SetChargingProfile":
        prof = payload.get("csChargingProfiles")
        tx = prof.get("transactionId") if isinstance(prof, dict) else None
        if isinstance(tx, int) and tx in mapping:
            return {**payload, "csChargingProfiles": {**prof, "transactionId": mapping[tx]}}  # type: ignore[dict-item]
        return None
    tx = payload.get("transactionId")
    if isinstance(tx, int) and not isinstance(tx, bool) and tx in mapping:
        return {**payload, "transactionId": mapping[tx]}
    return None
