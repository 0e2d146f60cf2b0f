#!/usr/bin/env python3
"""What quirk profiles cost the pass-through hot path, in-process (a benchmark, not a test).

The traffic and the harness are ``bench/translate_cost.py``'s pass-through figure of set-up A (one 1.6 charger:
load.py's mix, MeterValues of 2 to 4 sampled values and 20 % Heartbeat, through the real ``Session`` with the real
metrics; only the time inside ``from_charger``/``from_backend`` counts). The session is given what the app layer
(gateway/app/quirks.py ``QuirkBook``, the real one, with the config's parser) gives it in each case:

* ``none``: no ``quirks:`` in the config (today's gateway);
* ``unmatched``: every shipped profile configured, none matching this charger (the session gets ``on_boot`` only,
  no hook: the case the issue holds to <= 1.05x of none);
* ``matched-idle``: a profile matches, but no rule names these messages (a hook that looks and finds nothing);
* ``matched-repair``: a profile whose rule repairs every MeterValues (a unit ``Hz`` -> ``Hertz``: repair, then the
  frame serialised anew);
* ``sampled``: no profile matches, the compliance report on with ``sample_rate: 0.01`` (one frame in 100 checked).

Variants run interleaved, ``--reps`` times each; each is compared with ``none`` by the median over reps of its
time over that rep's ``none`` (paired: what a busy machine moves least), and by the ratio of the minimums.
Run: ``.venv/bin/python bench/quirks_cost.py [--iterations N] [--reps R]``. Output: one JSON line, then a table.
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
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from translate_cost import HEARTBEAT_SHARE, WARM_UP, Charger, make_session, meter_payloads_16, round_trip

from gateway.app.quirks import ComplianceRecorder, QuirkBook
from gateway.config import parse_config
from gateway.core.session import Session
from gateway.store.memory import MemoryStore

VARIANTS = ("none", "unmatched", "matched-idle", "matched-repair", "sampled")
BASE = {"backends": {"csms": {"url": "ws://127.0.0.1:9/ocpp"}}, "routes": [{"match": "*", "primary": "csms"}]}
MATCH_BENCH = {"vendor": "BenchCo", "model": "LoadGen-*"}
IDLE_RULE = {"action": "StatusNotification", "direction": "from_charger", "message": "call", "path": "$.status",
             "repair": "enum_case"}  # fmt: skip
HZ_RULE = {"action": "MeterValues", "direction": "from_charger", "message": "call",
           "path": "$.meterValue[*].sampledValue[*].unit", "repair": "map", "values": {"Hz": "Hertz"}}  # fmt: skip


def config_for(variant: str) -> dict[str, Any]:
    if variant == "none":
        return BASE
    if variant == "unmatched":
        return {**BASE, "quirks": {"shipped": "all"}}
    if variant == "sampled":
        return {**BASE, "quirks": {"shipped": "all"}, "compliance": {"sample_rate": 0.01}}
    rule = IDLE_RULE if variant == "matched-idle" else HZ_RULE
    return {**BASE, "quirks": {"shipped": "all", "profiles": [
        {"name": "bench", "ocpp": "1.6", "match": MATCH_BENCH, "rules": [rule]}]}}  # fmt: skip


def hook_up(session: Session, variant: str) -> None:
    """What admission does for this variant's config (gateway/app/admission.py -> QuirkBook.attach)."""
    config = parse_config(config_for(variant), env={})
    recorder = None
    if config.compliance.active:
        recorder = ComplianceRecorder(MemoryStore().compliance(), config, session.metrics, None)
    book = QuirkBook(config, session.metrics, recorder, None)
    conn = SimpleNamespace(session=session, charger_id=session.charger_id, quirk_state=None,
                           log=SimpleNamespace(info=lambda *a, **k: None))  # fmt: skip
    book.attach(conn, None)  # type: ignore[arg-type]


def frames_for(variant: str, charger: Charger, txs: dict[int, int], n: int) -> list[bytes]:
    meters = meter_payloads_16(random.Random(1000), 32, txs.__getitem__)
    if variant == "matched-repair":
        for m in meters:
            m["meterValue"][0]["sampledValue"][-1]["unit"] = "Hz"  # a quirk in every MeterValues
    pattern = [((i * 37) % 100) < round(HEARTBEAT_SHARE * 100) for i in range(100)]
    return [charger.call("Heartbeat", {}) if pattern[i % 100] else charger.call("MeterValues", meters[i % 32])
            for i in range(n)]  # fmt: skip


def one(variant: str, iterations: int) -> float:
    async def go() -> float:
        session, charger, csms = make_session("A", False)
        hook_up(session, variant)
        boot = {"chargePointVendor": "BenchCo", "chargePointModel": "LoadGen-1", "firmwareVersion": "1.0.0"}
        round_trip(session, charger, csms, charger.call("BootNotification", boot))
        txs = {1: 5001, 2: 5002}
        if variant.startswith("matched"):
            assert session.quirks is not None and session.quirks.repairs is not None
        elif variant == "sampled":
            assert session.quirks is not None and session.quirks.repairs is None
        else:
            assert session.quirks is None
        for frame in frames_for(variant, charger, txs, WARM_UP):
            round_trip(session, charger, csms, frame)
        timed = frames_for(variant, charger, txs, iterations)
        spent = 0.0
        for frame in timed:
            spent += round_trip(session, charger, csms, frame)[0]
        return spent / iterations * 1e6

    return asyncio.run(go())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=20000)
    p.add_argument("--reps", type=int, default=7)
    args = p.parse_args()
    started = time.perf_counter()
    runs: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(args.reps):
        for v in VARIANTS:
            runs[v].append(one(v, args.iterations))
    med = {v: statistics.median(xs) for v, xs in runs.items()}
    low = {v: min(xs) for v, xs in runs.items()}
    # within one rep the variants ran back to back: their ratio to that rep's none is what noise moves least
    paired = {v: statistics.median(x / n for x, n in zip(runs[v], runs["none"], strict=True)) for v in VARIANTS}
    result = {
        "bench": "quirks_cost", "setup": "A pass-through (1.6)", "iterations": args.iterations, "reps": args.reps,
        "us_per_rt": {v: round(med[v], 3) for v in VARIANTS},
        "ratio_vs_none": {v: round(med[v] / med["none"], 3) for v in VARIANTS},
        "paired_ratio_median": {v: round(paired[v], 3) for v in VARIANTS},
        "us_per_rt_min": {v: round(low[v], 3) for v in VARIANTS},
        "ratio_of_min": {v: round(low[v] / low["none"], 3) for v in VARIANTS},
        "runs": {v: [round(x, 3) for x in xs] for v, xs in runs.items()},
        "python": platform.python_version(), "wall_s": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    print(json.dumps(result, separators=(",", ":")))
    print(f"pass-through CPU per round trip (set-up A traffic, {args.iterations} x {args.reps}):")
    print(f"  {'variant':15s} {'median':>9s} {'min':>9s}  {'paired ratio':>12s} {'ratio of min':>12s}")
    for v in VARIANTS:
        print(f"  {v:15s} {med[v]:6.3f} us {low[v]:6.3f} us  {paired[v]:11.3f}x {low[v] / low['none']:11.3f}x")
    print("  (paired ratio: the median over reps of the variant's time / that rep's none; a rep runs them in turn)")


if __name__ == "__main__":
    main()
