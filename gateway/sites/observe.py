"""What a site charger is doing, read from the OCPP messages it exchanges: transactions per EVSE and the EV's draw.

One :class:`ChargerObservation` per charger of a site, fed by a session hook (the same one taps use, so nothing is
parsed twice: the session hands over the payload it parsed) with ``(direction, message type, action, unique id,
payload)``. It speaks the charger's own version, whatever the CSMS speaks (a translated charger's CALLs reach the
hook as the charger sent them):

* 1.6: ``StartTransaction`` opens a transaction on its connector (its ``transactionId`` comes with the CSMS's
  answer, when the session is pass-through; a translated session's answer is the translator's, not seen here);
  ``StopTransaction`` ends the one with its ``transactionId``, or the only one; ``MeterValues`` updates the draw
  (and opens a transaction the gateway did not see start, after a restart); ``StatusNotification`` Charging /
  SuspendedEV / SuspendedEVSE opens one on that connector, Available / Finishing / Unavailable / Faulted ends it.
* 2.0.1 and 2.1: ``TransactionEvent`` Started / Updated / Ended (the EVSE from ``evse.id``, else from the
  transaction's earlier events), its meter values; ``MeterValues`` of an EVSE with a transaction;
  ``StatusNotification`` Available ends the EVSE's transaction.
* From the CSMS: a ``ClearChargingProfile`` or a ``SetChargingProfile`` of a station-wide maximum profile may
  touch the controller's profiles, and a ``BootNotification`` of the charger may mean it restarted: each marks the
  charger *dirty* (the controller reads it back and sends its profiles again).

The draw is taken from ``Current.Import`` (per phase ``L1``/``L2``/``L3``, or one value for every phase) and
``Power.Active.Import`` sampled values, the last meter value that has either. Pure; the clock is given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DIRTY",
    "METER",
    "TX",
    "WATCHED",
    "ChargerObservation",
    "EvseState",
    "measured",
]

#: what :meth:`ChargerObservation.apply` saw: a transaction began or ended, a new measurement, profiles touched
TX, METER, DIRTY = 1, 2, 4

#: the actions the hook looks at (any other returns at once)
WATCHED = frozenset(
    {
        "StartTransaction", "StopTransaction", "MeterValues", "StatusNotification", "TransactionEvent",
        "ClearChargingProfile", "SetChargingProfile", "BootNotification",
    }
)  # fmt: skip

_OPEN_16 = {"Charging", "SuspendedEV", "SuspendedEVSE"}
_CLOSE_16 = {"Available", "Finishing", "Unavailable", "Faulted"}
_MAX_PROFILES = {"ChargePointMaxProfile", "ChargingStationMaxProfile"}
_PHASE = {"L1": 0, "L1-N": 0, "L2": 1, "L2-N": 1, "L3": 2, "L3-N": 2}
#: pending 1.6 StartTransactions waiting for their answer (a charger has one CALL outstanding: a few suffice)
_PENDING_MAX = 8


@dataclass(slots=True)
class EvseState:
    """One EVSE (1.6: connector) with a transaction."""

    tx: str | None = None
    #: wall clock when the gateway saw it start
    since: float = 0.0
    #: the last measured currents on the charger's L1, L2, L3 (None: not measured)
    phase_a: tuple[float, float, float] | None = None
    #: the last measured power (W)
    power_w: float | None = None
    measured_at: float = 0.0

    def doc(self) -> dict[str, Any]:
        return {
            "tx": self.tx, "since": self.since, "phase_a": list(self.phase_a) if self.phase_a else None,
            "power_w": self.power_w, "measured_at": self.measured_at,
        }  # fmt: skip

    @classmethod
    def from_doc(cls, d: Mapping[str, Any]) -> EvseState:
        pa = d.get("phase_a")
        phase_a = (float(pa[0]), float(pa[1]), float(pa[2])) if isinstance(pa, list) and len(pa) == 3 else None
        pw = d.get("power_w")
        tx = d.get("tx")
        return cls(
            tx=str(tx) if tx is not None else None,
            since=float(d.get("since") or 0.0),
            phase_a=phase_a,
            power_w=float(pw) if isinstance(pw, int | float) else None,
            measured_at=float(d.get("measured_at") or 0.0),
        )


@dataclass(slots=True)
class ChargerObservation:
    """One site charger, as its messages show it."""

    version: str
    evses: dict[int, EvseState] = field(default_factory=dict)
    #: connected to some node now, which one, and since when (each connection is read back anew)
    connected: bool = False
    node: str = ""
    connected_at: float = 0.0
    #: bumped whenever the profiles may have been touched (CSMS ClearChargingProfile, a boot)
    dirty: int = 0
    _pending: dict[str, int] = field(default_factory=dict)

    # ------------------------------------------------------------------ the hook

    def apply(self, direction: str, message_type: str, action: str, unique_id: str, payload: Mapping[str, Any],
              now: float) -> int:  # fmt: skip
        """One message seen by the session; what it changed (:data:`TX` | :data:`METER` | :data:`DIRTY`)."""
        if action not in WATCHED:
            return 0
        if direction == "from_backend":
            if message_type == "call":
                return self._from_csms(action, payload)
            if message_type == "callresult" and action == "StartTransaction":
                return self._started_16(unique_id, payload)
            return 0
        if message_type != "call":
            return 0
        if action == "BootNotification":
            self.dirty += 1
            return DIRTY
        if self.version == "1.6":
            return self._charger_16(action, unique_id, payload, now)
        return self._charger_2x(action, payload, now)

    def _from_csms(self, action: str, p: Mapping[str, Any]) -> int:
        if action == "ClearChargingProfile" or (action == "SetChargingProfile" and _purpose(p) in _MAX_PROFILES):
            self.dirty += 1
            return DIRTY
        return 0

    # ------------------------------------------------------------------ 1.6

    def _charger_16(self, action: str, uid: str, p: Mapping[str, Any], now: float) -> int:
        if action == "StartTransaction":
            connector = _int(p.get("connectorId"))
            if connector is None or connector < 1:
                return 0
            if len(self._pending) >= _PENDING_MAX:
                self._pending.pop(next(iter(self._pending)))
            self._pending[uid] = connector
            self.evses[connector] = EvseState(since=now)
            return TX
        if action == "StopTransaction":
            tx = p.get("transactionId")
            for evse, st in self.evses.items():
                if st.tx is not None and st.tx == str(tx):
                    del self.evses[evse]
                    return TX
            if len(self.evses) == 1:  # its id never seen (translated session, or started before a restart)
                self.evses.clear()
                return TX
            return 0
        if action == "MeterValues":
            connector = _int(p.get("connectorId"))
            if connector is None or connector < 1:
                return 0
            changed = 0
            found = self.evses.get(connector)
            tx = p.get("transactionId")
            if found is None:
                if tx is None:
                    return 0
                st = self.evses[connector] = EvseState(tx=str(tx), since=now)
                changed = TX
            else:
                st = found
                if tx is not None and st.tx is None:
                    st.tx = str(tx)
            return changed | _measure(st, p.get("meterValue"), now)
        if action == "StatusNotification":
            connector = _int(p.get("connectorId"))
            status = p.get("status")
            if connector is None or connector < 1:
                return 0
            if status in _OPEN_16 and connector not in self.evses:
                self.evses[connector] = EvseState(since=now)
                return TX
            if status in _CLOSE_16 and connector in self.evses:
                del self.evses[connector]
                return TX
        return 0

    def _started_16(self, uid: str, p: Mapping[str, Any]) -> int:
        connector = self._pending.pop(uid, None)
        st = self.evses.get(connector) if connector is not None else None
        if st is not None and "transactionId" in p:
            st.tx = str(p["transactionId"])
        return 0

    # ------------------------------------------------------------------ 2.0.1, 2.1

    def _charger_2x(self, action: str, p: Mapping[str, Any], now: float) -> int:
        if action == "TransactionEvent":
            info = p.get("transactionInfo")
            tx = str(info.get("transactionId")) if isinstance(info, Mapping) else None
            evse_node = p.get("evse")
            evse = _int(evse_node.get("id")) if isinstance(evse_node, Mapping) else None
            if evse is None:
                evse = next((e for e, st in self.evses.items() if st.tx == tx), None)
            if evse is None or evse < 1:
                return 0
            if p.get("eventType") == "Ended":
                if evse in self.evses:
                    del self.evses[evse]
                    return TX
                return 0
            changed = 0
            st = self.evses.get(evse)
            if st is None or st.tx != tx:
                st = self.evses[evse] = EvseState(tx=tx, since=now)
                changed = TX
            return changed | _measure(st, p.get("meterValue"), now)
        if action == "MeterValues":
            st = self.evses.get(_int(p.get("evseId")) or 0)
            return _measure(st, p.get("meterValue"), now) if st is not None else 0
        if action == "StatusNotification":
            evse = _int(p.get("evseId"))
            if evse is not None and p.get("connectorStatus") == "Available" and evse in self.evses:
                del self.evses[evse]
                return TX
        return 0

    # ------------------------------------------------------------------ the stored form

    def doc(self) -> dict[str, Any]:
        return {
            "version": self.version, "connected": self.connected, "node": self.node,
            "connected_at": self.connected_at, "dirty": self.dirty,
            "evses": {str(e): st.doc() for e, st in sorted(self.evses.items())},
        }  # fmt: skip

    @classmethod
    def from_doc(cls, d: Mapping[str, Any]) -> ChargerObservation:
        evses_raw = d.get("evses")
        evses: dict[int, EvseState] = {}
        if isinstance(evses_raw, Mapping):
            for k, v in evses_raw.items():
                if str(k).isdigit() and isinstance(v, Mapping):
                    evses[int(k)] = EvseState.from_doc(v)
        return cls(
            version=str(d.get("version") or "1.6"),
            evses=evses,
            connected=bool(d.get("connected")),
            node=str(d.get("node") or ""),
            connected_at=float(d.get("connected_at") or 0.0),
            dirty=int(d.get("dirty") or 0),
        )


# ---------------------------------------------------------------------------------------------------------------
# meter values


def _measure(st: EvseState, meter_values: Any, now: float) -> int:
    got = measured(meter_values)
    if got is None:
        return 0
    st.phase_a, st.power_w = got
    st.measured_at = now
    return METER


def measured(meter_values: Any) -> tuple[tuple[float, float, float] | None, float | None] | None:
    """(currents on L1, L2, L3, power in W) of the last meter value with ``Current.Import`` or
    ``Power.Active.Import`` (1.6 strings or 2.x numbers, 1.6 ``unit`` or 2.x ``unitOfMeasure``); None when none
    has either. One current without a phase stands for every phase."""
    if not isinstance(meter_values, Sequence) or isinstance(meter_values, str):
        return None
    for mv in reversed(meter_values):
        sampled = mv.get("sampledValue") if isinstance(mv, Mapping) else None
        if not isinstance(sampled, Sequence):
            continue
        currents: list[float | None] = [None, None, None]
        power: float | None = None
        for sv in sampled:
            if not isinstance(sv, Mapping):
                continue
            measurand = sv.get("measurand")
            value = _value(sv)
            if value is None:
                continue
            phase = sv.get("phase")
            if measurand == "Current.Import":
                if phase is None:
                    currents = [value, value, value]
                elif phase in _PHASE:
                    currents[_PHASE[phase]] = value
            elif measurand == "Power.Active.Import":
                if phase is None:
                    power = value
                elif phase in _PHASE:
                    power = (power or 0.0) + value
        if any(c is not None for c in currents) or power is not None:
            phase_a = (
                (currents[0] or 0.0, currents[1] or 0.0, currents[2] or 0.0)
                if any(c is not None for c in currents)
                else None
            )
            return phase_a, power
    return None


_SCALE = {"A": 1.0, "mA": 0.001, "W": 1.0, "kW": 1000.0, "MW": 1e6}


def _value(sv: Mapping[str, Any]) -> float | None:
    raw = sv.get("value")
    try:
        value = float(raw) if isinstance(raw, str | int | float) and not isinstance(raw, bool) else None
    except ValueError:
        return None
    if value is None or not math.isfinite(value):
        return None
    uom = sv.get("unitOfMeasure")
    unit = sv.get("unit") if uom is None else (uom.get("unit") if isinstance(uom, Mapping) else None)
    if isinstance(uom, Mapping) and isinstance(uom.get("multiplier"), int):
        value *= 10.0 ** uom["multiplier"]
    if isinstance(unit, str):
        value *= _SCALE.get(unit, 1.0)
    return max(0.0, value)


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _purpose(p: Mapping[str, Any]) -> Any:
    profile = p.get("csChargingProfiles") or p.get("chargingProfile")
    return profile.get("chargingProfilePurpose") if isinstance(profile, Mapping) else None
