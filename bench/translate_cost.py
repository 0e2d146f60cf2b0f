#!/usr/bin/env python3
"""CPU cost of the translation layer per round trip, in-process (a benchmark, not a test).

Set-up A: one 1.6 charger's traffic — the load generator's mix (``shared/bench/load.py``: MeterValues of 2 to 4
sampled values, CALL frames of ~390 to ~625 bytes, ~510 on average, and 20 % Heartbeat) — goes through

* ``Session`` (pass-through, a 1.6 backend), and
* ``Session`` with a translator (the real ``V16ChargerToV201Csms``, a 2.0.1 backend).

Set-up B: the same mix from a 2.0.1 charger — 80 % TransactionEvent ``Updated`` (``MeterValuePeriodic``, 2 to 4
sampled values, a fresh ``seqNo`` each) inside an open transaction whose StartTransaction.conf already came, 20 %
Heartbeat — goes through

* ``Session`` (pass-through, a 2.0.1 backend), and
* ``Session`` with a translator (the real ``V201ChargerToV16Csms`` with default options, a 1.6 backend).

Set-up C: set-up B's traffic from a 2.1 charger (the same messages are 2.1 messages), through

* ``Session`` (pass-through, a 2.1 backend), and
* ``Session`` with a translator (the real ``V21ChargerToV201Csms``, a 2.0.1 backend: pass-through less 2.1's fields,
  of which this traffic has none, checked against 2.0.1's schemas).

Both use the gateway's real classes (metrics, schema validation of translated messages, translator, state
snapshots for the store, and the memory store's encoding of each state write, as the write-behind queue applies it)
and no network: the charger's send callable appends bytes, the backend's records the CALL,
and a fake CSMS answers each CALL synchronously (a callable building the CALLRESULT the backend's version expects).
A round trip is one charger CALL in, the backend's CALL(s) out, their answer(s) in, the charger's answer out (in
set-up B the charger's ``{}`` to an ``Updated`` comes at once and the 1.6 MeterValues follows it: both are counted).
Only the time spent inside the session's ``from_charger``/``from_backend`` is counted (the fake CSMS's JSON work is
not the gateway's).

Output, per set-up: one JSON line, then one line for humans.
Run: ``.venv/bin/python bench/translate_cost.py [--setup A|B|C|both|all] [--iterations N]`` (both: A and B).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.core.session import Effects, Session
from gateway.metrics import Metrics
from gateway.store.base import Write
from gateway.store.memory import _encoded
from gateway.translate import translator_for
from gateway.translate.v201_to_v16 import V201ChargerToV16Csms

HEARTBEAT_SHARE = 0.2  # load.py's default
WARM_UP = 2000  # round trips before timing (caches, metric children)

#: set-up -> (charger version, backend version when translated)
SETUPS = {"A": ("1.6", "2.0.1"), "B": ("2.0.1", "1.6"), "C": ("2.1", "2.0.1")}


def _ts(offset_s: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - offset_s)) + ".000Z"


def _samples(rng: random.Random) -> list[dict[str, Any]]:
    """load.py's four sampled values (1.6 form: values are strings)."""
    e = rng.uniform(1000, 90000)
    return [
        {
            "value": f"{e:.1f}",
            "context": "Sample.Periodic",
            "format": "Raw",
            "measurand": "Energy.Active.Import.Register",
            "location": "Outlet",
            "unit": "Wh",
        },
        {
            "value": f"{rng.uniform(3000, 22000):.1f}",
            "context": "Sample.Periodic",
            "measurand": "Power.Active.Import",
            "location": "Outlet",
            "unit": "W",
        },
        {
            "value": f"{rng.uniform(6, 32):.2f}",
            "context": "Sample.Periodic",
            "measurand": "Current.Import",
            "phase": "L1",
            "location": "Outlet",
            "unit": "A",
        },
        {
            "value": f"{rng.uniform(225, 235):.1f}",
            "context": "Sample.Periodic",
            "measurand": "Voltage",
            "phase": "L1-N",
            "location": "Outlet",
            "unit": "V",
        },
    ]  # fmt: skip


def _sample_201(sv: dict[str, Any]) -> dict[str, Any]:
    """A 1.6 sampled value in its 2.0.1 form (number value, ``unitOfMeasure``, no ``format``)."""
    out: dict[str, Any] = {"value": float(sv["value"])}
    out.update((k, sv[k]) for k in ("context", "measurand", "phase", "location") if k in sv)
    out["unitOfMeasure"] = {"unit": sv["unit"]}
    return out


def meter_payloads_16(rng: random.Random, count: int, tx_of: Callable[[int], int]) -> list[dict[str, Any]]:
    """load.py's 1.6 MeterValues payloads, with the transactionId of the connector's open transaction."""
    out = []
    for k in range(count):
        sv = _samples(rng)
        n_sv = 2 + (k % 3)
        connector = 1 + k % 2
        out.append(
            {
                "connectorId": connector,
                "transactionId": tx_of(connector),
                "meterValue": [{"timestamp": _ts(k), "sampledValue": sv[:n_sv]}],
            }
        )
    return out  # fmt: skip


def meter_events_201(rng: random.Random, count: int, tx_of: Callable[[int], str]) -> list[dict[str, Any]]:
    """The same samples as 2.0.1 TransactionEvent ``Updated`` payloads, without ``seqNo`` (set per frame)."""
    out = []
    for k in range(count):
        sv = [_sample_201(s) for s in _samples(rng)]
        n_sv = 2 + (k % 3)
        connector = 1 + k % 2
        out.append(
            {
                "eventType": "Updated",
                "timestamp": _ts(k),
                "triggerReason": "MeterValuePeriodic",
                "transactionInfo": {"transactionId": tx_of(connector)},
                "meterValue": [{"timestamp": _ts(k), "sampledValue": sv[:n_sv]}],
            }
        )
    return out  # fmt: skip


class FakeCsms:
    """Answers every CALL it is sent, synchronously, in the backend's version."""

    ANSWERS: ClassVar[dict[str, dict[str, Any]]] = {
        "BootNotification": {"status": "Accepted", "currentTime": "2025-01-01T00:00:00.000Z", "interval": 300},
        "Heartbeat": {"currentTime": "2025-01-01T00:00:00.000Z"},
        "MeterValues": {},
        "StatusNotification": {},
        "StartTransaction": {"transactionId": 0, "idTagInfo": {"status": "Accepted"}},
        "StopTransaction": {"idTagInfo": {"status": "Accepted"}},
        "TransactionEvent": {},
    }

    def __init__(self) -> None:
        self.inbox: list[bytes] = []
        self.calls = 0
        self.tx_ids = iter(range(5001, 10**9))

    def send(self, data: Any) -> None:  # the session's send_backend
        self.inbox.append(bytes(data))

    def answer(self, frame: bytes) -> bytes:
        msg = json.loads(frame)
        assert msg[0] == 2, f"the CSMS only expects CALLs here, got {frame!r}"
        self.calls += 1
        action, payload = msg[2], msg[3]
        result = self.ANSWERS[action]
        if action == "StartTransaction":
            result = {**result, "transactionId": next(self.tx_ids)}
        elif action == "TransactionEvent" and payload["eventType"] == "Started":
            result = {"idTokenInfo": {"status": "Accepted"}}
        return json.dumps([3, msg[1], result], separators=(",", ":")).encode()


class Charger:
    """The charger's end: CALL frames out, answers in."""

    def __init__(self) -> None:
        self.inbox: list[bytes] = []
        self.uid = 0

    def send(self, data: Any) -> None:  # the session's to_charger
        self.inbox.append(bytes(data))

    def call(self, action: str, payload: dict[str, Any]) -> bytes:
        self.uid += 1
        return json.dumps([2, f"c{self.uid}", action, payload], separators=(",", ":")).encode()


def round_trip(session: Session, charger: Charger, csms: FakeCsms, frame: bytes) -> tuple[float, list[Any]]:
    """One charger CALL to its answer; returns (seconds inside the session, the charger's answer)."""
    t0 = time.perf_counter()
    session.from_charger(frame)
    spent = time.perf_counter() - t0
    while csms.inbox:
        answer = csms.answer(csms.inbox.pop(0))
        t0 = time.perf_counter()
        session.from_backend(answer)
        spent += time.perf_counter() - t0
    assert len(charger.inbox) == 1, f"expected one answer, got {charger.inbox!r}"
    reply = json.loads(charger.inbox.pop())
    assert reply[0] == 3, f"the charger got a CALLERROR: {reply!r}"
    return spent, reply


def _no_failure(side: str, code: int, reason: str) -> None:
    raise AssertionError(f"the bench's frames are valid: the session failed the {side} with {code} ({reason})")


def make_session(setup_name: str, translating: bool) -> tuple[Session, Charger, FakeCsms]:
    charger, csms = Charger(), FakeCsms()
    last_write: list[Write] = []

    def write(w: Write) -> None:
        # what the memory store does when it applies a translation state (the write-behind queue applies each one: a
        # charger's next write comes in another frame callback): keep its JSON text, encoding it when it is a dict
        if w.kind == "tx" and w.value is not None:
            w = Write(w.kind, w.cid, w.sub, w.value if isinstance(w.value, bytes) else _encoded(w.value))
        last_write[:] = [w]

    charger_version, backend_version = SETUPS[setup_name]
    common: dict[str, Any] = {
        "charger_id": "BENCH-1",
        "version": charger_version,
        "backend": "csms",
        "effects": Effects(to_charger=charger.send, to_backend=csms.send, persist=write, fail=_no_failure),
        "metrics": Metrics(),
        "clock": time.monotonic,
        "wall": time.time,
    }
    if translating:
        translator = translator_for(charger_version, backend_version)
        if setup_name == "B":
            assert isinstance(translator, V201ChargerToV16Csms)
        return Session(**common, translator=translator, backend_version=backend_version), charger, csms
    return Session(**common), charger, csms


def setup_a(session: Session, charger: Charger, csms: FakeCsms, history: int) -> dict[int, int]:
    """Set-up A: boot, ``history`` finished transactions, a transaction on connectors 1 and 2 (not timed).

    Returns connector -> transactionId of the open ones. Finished transactions stay in the translation state for
    7 days (``ENDED_RETENTION``): ``history`` stands for a charger's recent past.
    """
    boot = {"chargePointVendor": "BenchCo", "chargePointModel": "LoadGen-1", "chargePointSerialNumber": "SN-1",
            "firmwareVersion": "1.0.0"}  # fmt: skip
    round_trip(session, charger, csms, charger.call("BootNotification", boot))
    for n in range(history):
        start = {"connectorId": 1, "idTag": f"OLD{n}", "meterStart": 1000 * n, "timestamp": _ts(3600)}
        _, reply = round_trip(session, charger, csms, charger.call("StartTransaction", start))
        tx = int(reply[2]["transactionId"])
        meter = meter_payloads_16(random.Random(n), 1, lambda _c, tx=tx: tx)[0]
        round_trip(session, charger, csms, charger.call("MeterValues", {**meter, "connectorId": 1}))
        stop = {"transactionId": reply[2]["transactionId"], "meterStop": 1000 * n + 500, "timestamp": _ts(1800),
                "idTag": f"OLD{n}", "reason": "Local"}  # fmt: skip
        round_trip(session, charger, csms, charger.call("StopTransaction", stop))
    txs = {}
    for connector in (1, 2):
        status = {"connectorId": connector, "errorCode": "NoError", "status": "Charging"}
        round_trip(session, charger, csms, charger.call("StatusNotification", status))
        start = {"connectorId": connector, "idTag": f"TAG{connector}", "meterStart": 1000, "timestamp": _ts(0)}
        _, reply = round_trip(session, charger, csms, charger.call("StartTransaction", start))
        txs[connector] = int(reply[2]["transactionId"])
    return txs


def _register(value: float, context: str) -> list[dict[str, Any]]:
    sv = {"value": value, "context": context, "measurand": "Energy.Active.Import.Register",
          "unitOfMeasure": {"unit": "Wh"}}  # fmt: skip
    return [{"timestamp": _ts(0), "sampledValue": [sv]}]


def setup_b(session: Session, charger: Charger, csms: FakeCsms, history: int, seq: dict[str, int]) -> dict[int, str]:
    """Set-up B: boot, ``history`` finished transactions, a transaction on EVSEs 1 and 2 (not timed).

    Returns connector (EVSE) -> the charger's transactionId of the open ones, whose StartTransaction.conf came (the
    charger's ``Started`` was answered with the CSMS's ``idTagInfo``). ``seq`` gets the next ``seqNo`` of each.
    """
    boot = {"reason": "PowerUp", "chargingStation": {"model": "LoadGen-1", "vendorName": "BenchCo",
            "serialNumber": "SN-1", "firmwareVersion": "1.0.0"}}  # fmt: skip
    round_trip(session, charger, csms, charger.call("BootNotification", boot))
    for n in range(history):
        tx = f"OLD-{n}"
        token = {"idToken": f"OLD{n}", "type": "ISO14443"}
        started = {"eventType": "Started", "timestamp": _ts(3600), "triggerReason": "Authorized", "seqNo": 0,
                   "transactionInfo": {"transactionId": tx, "chargingState": "Charging"},
                   "evse": {"id": 1, "connectorId": 1}, "idToken": token,
                   "meterValue": _register(1000 * n, "Transaction.Begin")}  # fmt: skip
        _, reply = round_trip(session, charger, csms, charger.call("TransactionEvent", started))
        assert "idTokenInfo" in reply[2], reply
        meter = {**meter_events_201(random.Random(n), 1, lambda _c, tx=tx: tx)[0], "seqNo": 1}
        round_trip(session, charger, csms, charger.call("TransactionEvent", meter))
        ended = {"eventType": "Ended", "timestamp": _ts(1800), "triggerReason": "StopAuthorized", "seqNo": 2,
                 "transactionInfo": {"transactionId": tx, "stoppedReason": "Local"}, "idToken": token,
                 "meterValue": _register(1000 * n + 500, "Transaction.End")}  # fmt: skip
        round_trip(session, charger, csms, charger.call("TransactionEvent", ended))
    txs = {}
    for evse in (1, 2):
        status = {"timestamp": _ts(0), "connectorStatus": "Occupied", "evseId": evse, "connectorId": 1}
        round_trip(session, charger, csms, charger.call("StatusNotification", status))
        tx = f"TX-{evse}"
        started = {"eventType": "Started", "timestamp": _ts(0), "triggerReason": "Authorized", "seqNo": 0,
                   "transactionInfo": {"transactionId": tx, "chargingState": "Charging"},
                   "evse": {"id": evse, "connectorId": 1}, "idToken": {"idToken": f"TAG{evse}", "type": "ISO14443"},
                   "meterValue": _register(1000, "Transaction.Begin")}  # fmt: skip
        _, reply = round_trip(session, charger, csms, charger.call("TransactionEvent", started))
        assert reply[2].get("idTokenInfo", {}).get("status") == "Accepted", reply
        txs[evse] = tx
        seq[tx] = 1
    return txs


def run(setup_name: str, translating: bool, iterations: int, repeats: int, history: int) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        session, charger, csms = make_session(setup_name, translating)
        pattern = [((i * 37) % 100) < round(HEARTBEAT_SHARE * 100) for i in range(100)]
        if setup_name == "A":
            txs = setup_a(session, charger, csms, history)
            meters = meter_payloads_16(random.Random(1000), 32, txs.__getitem__)
            frames = [
                charger.call("Heartbeat", {}) if pattern[i % 100] else charger.call("MeterValues", meters[i % 32])
                for i in range(iterations)
            ]

            def batch(n: int) -> list[bytes]:  # the same frames every pass: a 1.6 MeterValues has no sequence
                return frames[:n]

        else:
            seq: dict[str, int] = {}
            txs_b = setup_b(session, charger, csms, history, seq)
            events = meter_events_201(random.Random(1000), 32, txs_b.__getitem__)

            def batch(n: int) -> list[bytes]:  # fresh frames every pass: each TransactionEvent needs the next seqNo
                out = []
                for i in range(n):
                    if pattern[i % 100]:
                        out.append(charger.call("Heartbeat", {}))
                        continue
                    event = events[i % 32]
                    tx = event["transactionInfo"]["transactionId"]
                    out.append(charger.call("TransactionEvent", {**event, "seqNo": seq[tx]}))
                    seq[tx] += 1
                return out

        for frame in batch(min(WARM_UP, iterations)):
            round_trip(session, charger, csms, frame)
        calls_before, meter_sizes = csms.calls, []
        per_rt: list[float] = []
        for _ in range(repeats):
            timed = batch(iterations)  # built before the clock runs
            meter_sizes = [len(f) for f in timed if b'"Heartbeat"' not in f]
            spent = 0.0
            for frame in timed:
                spent += round_trip(session, charger, csms, frame)[0]
            per_rt.append(spent / iterations * 1e6)
        return {
            "us_per_rt": statistics.median(per_rt),
            "us_per_rt_min": min(per_rt),
            "meter_frame_bytes_avg": sum(meter_sizes) / len(meter_sizes),
            "backend_calls_per_rt": (csms.calls - calls_before) / (iterations * repeats),
        }

    return asyncio.run(go())


def measure(setup_name: str, args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    plain = run(setup_name, False, args.iterations, args.repeats, args.history)
    translated = run(setup_name, True, args.iterations, args.repeats, args.history)
    ratio = translated["us_per_rt"] / plain["us_per_rt"]
    charger_version, backend_version = SETUPS[setup_name]
    result = {
        "bench": "translate_cost",
        "setup": setup_name,
        "charger_ocpp": charger_version,
        "backend_ocpp": backend_version,
        "iterations": args.iterations,
        "repeats": args.repeats,
        "heartbeat_share": HEARTBEAT_SHARE,
        "meter_frame_bytes_avg": round(plain["meter_frame_bytes_avg"], 1),
        "passthrough_us_per_rt": round(plain["us_per_rt"], 2),
        "translating_us_per_rt": round(translated["us_per_rt"], 2),
        "passthrough_us_per_rt_min": round(plain["us_per_rt_min"], 2),
        "translating_us_per_rt_min": round(translated["us_per_rt_min"], 2),
        "ratio": round(ratio, 2),
        "translated_backend_calls_per_rt": round(translated["backend_calls_per_rt"], 2),
        "history": args.history,
        "python": platform.python_version(),
        "wall_s": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    meter_action = "MeterValues" if setup_name == "A" else "TransactionEvent Updated"
    print(json.dumps(result, separators=(",", ":")))
    print(
        f"set-up {setup_name} ({charger_version} charger -> {backend_version} CSMS) translation CPU per round trip: "
        f"{result['translating_us_per_rt']} us vs pass-through {result['passthrough_us_per_rt']} us "
        f"({ratio:.1f}x; +{translated['us_per_rt'] - plain['us_per_rt']:.1f} us) "
        f"over {args.iterations}x{args.repeats} round trips, {HEARTBEAT_SHARE:.0%} Heartbeat, "
        f"{meter_action} ~{result['meter_frame_bytes_avg']:.0f} B, {args.history} finished transactions in the state",
        flush=True,
    )
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--setup", choices=("A", "B", "C", "both", "all"), default="both",
                    help="A: 1.6 charger -> 2.0.1 CSMS; B: 2.0.1 charger -> 1.6 CSMS; C: 2.1 charger -> 2.0.1 CSMS; "
                         "both: A then B; all: A, B, C")  # fmt: skip
    ap.add_argument("--iterations", type=int, default=5000, help="round trips per repeat")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per mode (the median is reported)")
    ap.add_argument("--history", type=int, default=0, help="finished transactions in the state before timing")
    args = ap.parse_args()
    names = {"both": ("A", "B"), "all": ("A", "B", "C")}.get(args.setup, (args.setup,))
    for setup_name in names:
        measure(setup_name, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
