#!/usr/bin/env python3
"""CPU cost of the translation layer per round trip, in-process (a benchmark, not a test).

One 1.6 charger's traffic — the load generator's mix (``shared/bench/load.py``: MeterValues of 2 to 4 sampled values,
CALL frames of ~390 to ~625 bytes, ~510 on average, and 20 % Heartbeat) — goes through

* ``Session`` (pass-through, a 1.6 backend), and
* ``TranslatingSession`` (the real ``V16ChargerToV201Csms`` translator, a 2.0.1 backend),

with the gateway's real classes (metrics, schema validation, translator, state snapshots for the store) and no
network: the charger's send callable appends bytes, the backend's records the CALL, and a fake CSMS answers each
CALL synchronously (a callable building the CALLRESULT the backend's version expects). A round trip is one charger
CALL in, the backend's CALL(s) out, their answer(s) in, the charger's answer out. Only the time spent inside the
session's ``from_charger``/``from_backend`` is counted (the fake CSMS's JSON work is not the gateway's).

Output: one JSON line, then one line for humans. Run: ``.venv/bin/python bench/translate_cost.py [--iterations N]``.
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

from gateway.bridge import TranslatingSession
from gateway.metrics import Metrics
from gateway.session import Session
from gateway.store.base import Write
from gateway.translate import translator_for

HEARTBEAT_SHARE = 0.2  # load.py's default


def _ts(offset_s: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - offset_s)) + ".000Z"


def meter_payloads_16(rng: random.Random, count: int, tx_of: Callable[[int], int]) -> list[dict[str, Any]]:
    """load.py's 1.6 MeterValues payloads, with the transactionId of the connector's open transaction."""
    out = []
    for k in range(count):
        e = rng.uniform(1000, 90000)
        sv = [
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
        ]
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

    def send(self, data: Any) -> None:  # the session's send_charger
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


def make_session(translating: bool) -> tuple[Session, Charger, FakeCsms]:
    charger, csms = Charger(), FakeCsms()
    last_write: list[Write] = []

    def write(w: Write) -> None:  # the write-behind queue coalesces per charger: keep the latest only
        last_write[:] = [w]

    common: dict[str, Any] = {
        "charger_id": "BENCH-1",
        "version": "1.6",
        "backend": "csms",
        "send_charger": charger.send,
        "send_backend": csms.send,
        "metrics": Metrics(),
        "write": write,
    }
    if translating:
        translator = translator_for("1.6", "2.0.1")
        return TranslatingSession(**common, translator=translator, backend_version="2.0.1"), charger, csms
    return Session(**common), charger, csms


def setup(session: Session, charger: Charger, csms: FakeCsms, history: int) -> dict[int, int]:
    """Boot, ``history`` finished transactions, a transaction on connectors 1 and 2 (not timed).

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


def run(translating: bool, iterations: int, repeats: int, history: int) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        session, charger, csms = make_session(translating)
        txs = setup(session, charger, csms, history)
        meters = meter_payloads_16(random.Random(1000), 32, txs.__getitem__)
        pattern = [((i * 37) % 100) < round(HEARTBEAT_SHARE * 100) for i in range(100)]
        frames = [
            charger.call("Heartbeat", {}) if pattern[i % 100] else charger.call("MeterValues", meters[i % 32])
            for i in range(iterations)
        ]
        meter_sizes = [len(f) for f in frames if b'"MeterValues"' in f]
        for frame in frames[: min(2000, iterations)]:  # warm-up (caches, metric children)
            round_trip(session, charger, csms, frame)
        per_rt: list[float] = []
        for _ in range(repeats):
            spent = 0.0
            for frame in frames:
                spent += round_trip(session, charger, csms, frame)[0]
            per_rt.append(spent / iterations * 1e6)
        return {
            "us_per_rt": statistics.median(per_rt),
            "us_per_rt_min": min(per_rt),
            "meter_frame_bytes_avg": sum(meter_sizes) / len(meter_sizes),
        }

    return asyncio.run(go())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=5000, help="round trips per repeat")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per mode (the median is reported)")
    ap.add_argument("--history", type=int, default=0, help="finished transactions in the state before timing")
    args = ap.parse_args()
    started = time.perf_counter()
    plain = run(False, args.iterations, args.repeats, args.history)
    translated = run(True, args.iterations, args.repeats, args.history)
    ratio = translated["us_per_rt"] / plain["us_per_rt"]
    result = {
        "bench": "translate_cost",
        "iterations": args.iterations,
        "repeats": args.repeats,
        "heartbeat_share": HEARTBEAT_SHARE,
        "meter_frame_bytes_avg": round(plain["meter_frame_bytes_avg"], 1),
        "passthrough_us_per_rt": round(plain["us_per_rt"], 2),
        "translating_us_per_rt": round(translated["us_per_rt"], 2),
        "passthrough_us_per_rt_min": round(plain["us_per_rt_min"], 2),
        "translating_us_per_rt_min": round(translated["us_per_rt_min"], 2),
        "ratio": round(ratio, 2),
        "history": args.history,
        "python": platform.python_version(),
        "wall_s": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    print(json.dumps(result, separators=(",", ":")))
    print(
        f"translation CPU per round trip: {result['translating_us_per_rt']} us vs pass-through "
        f"{result['passthrough_us_per_rt']} us ({ratio:.1f}x; +{translated['us_per_rt'] - plain['us_per_rt']:.1f} us) "
        f"over {args.iterations}x{args.repeats} round trips, {HEARTBEAT_SHARE:.0%} Heartbeat, "
        f"MeterValues ~{result['meter_frame_bytes_avg']:.0f} B, {args.history} finished transactions in the state"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
