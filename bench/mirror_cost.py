#!/usr/bin/env python3
"""What a mirror that is down costs the primary path, at a fixed offered load (a benchmark, not a test).

``bench/compare.py`` drives the gateway in a closed loop until its CPU is saturated: there every extra microsecond
shows as fewer messages per second. Chargers do not behave like that: each sends a CALL now and then, and what it
feels is the round trip through the gateway to the primary CSMS and back. This script offers the same load to
each target (N chargers, R CALLs per second in total, spread evenly, one outstanding CALL per charger, the shared
harness's 1.6 MeterValues/Heartbeat mix) and reports, per target, the round-trip percentiles the chargers saw and
the gateway's CPU per round trip. Targets (the shared harness's CSMS stand-in is the primary of all of them):

  gateway                     memory store, no mirror
  gateway-mirror-down         memory store, a mirror backend that refuses connections (copies pile up in memory)
  gateway-redis               Redis store (a redis-server started here), no mirror
  gateway-redis-mirror-down   Redis store, the same down mirror (copies pile up in the Redis spool stream)
  gateway-redis-again         a second gateway exactly like gateway-redis: the A/A noise reference

Reps are the outer loop and targets the inner one; every figure of a ``*-mirror-down`` target (and of the A/A
target) is also given as a ratio to its own store's no-mirror target of the same rep: the table shows the median of
those ratios, and a line under it their spread over the reps, so that a ratio can be read against what the noise
alone does to identical gateways in the same batch.
Loopback only, bounded: N <= 5000, R <= 20000/s, duration <= 60 s.

    .venv/bin/python bench/mirror_cost.py                      # N=1000, 5000 CALLs/s, 3 reps of 10 s
    .venv/bin/python bench/mirror_cost.py --rate 8000 --reps 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import PY, ROOT, SHARED, STUB_PORT, Procs, redis_server, start_targets

sys.path.insert(0, str(SHARED))
from load import boot_payload, meter_payloads_16

TARGETS = ("gateway", "gateway-mirror-down", "gateway-redis", "gateway-redis-mirror-down", "gateway-redis-again")
BASE = {
    "gateway-mirror-down": "gateway",
    "gateway-redis-mirror-down": "gateway-redis",
    "gateway-redis-again": "gateway-redis",
}
TICK_S = 0.01


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, clock ticks of 10 ms


def sys_s(pid: int) -> float:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[12]) / 100.0  # stime


def kernel_counts(pid: int) -> tuple[int, int]:
    """Minor page faults and context switches (voluntary + not) of the process so far: the software counters the
    kernel keeps, which show where CPU goes when hardware counters are not available (as in this VM)."""
    minflt = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])
    switches = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if "ctxt_switches:" in line:
            switches += int(line.split()[1])
    return minflt, switches


async def offered_load(url: str, pid: int, n: int, rate: float, duration: float, warmup: float) -> dict[str, Any]:
    """N chargers; every TICK_S the next R*TICK_S idle chargers (round robin) send one CALL each."""
    from picows import WSListener, WSMsgType, ws_connect

    rng = random.Random(7)
    meters = meter_payloads_16(rng, 32)
    boot = boot_payload("1.6")
    perf = time.perf_counter_ns
    lat = array("q")
    stats = {"sent": 0, "answered": 0, "skipped": 0, "errors": 0}
    measuring = [False]

    class Charger(WSListener):  # type: ignore[misc]
        def __init__(self) -> None:
            self.t: Any = None
            self.seq = 0
            self.uid = b""
            self.sent_at = 0
            self.busy = False
            self.booted: asyncio.Future[bool] | None = None

        def on_ws_connected(self, transport: Any) -> None:
            self.t = transport

        def send(self, action: bytes, payload: bytes) -> None:
            self.seq += 1
            self.uid = b"%x" % self.seq
            self.busy = True
            self.sent_at = perf()
            self.t.send(WSMsgType.TEXT, b'[2,"' + self.uid + b'","' + action + b'",' + payload + b"]")

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            now = perf()
            if frame.msg_type != WSMsgType.TEXT:
                return
            ok = frame.get_payload_as_bytes().startswith(b'[3,"' + self.uid + b'"')
            self.busy = False
            if self.booted is not None:
                fut, self.booted = self.booted, None
                fut.set_result(ok)
                return
            if not ok:
                stats["errors"] += 1
            elif measuring[0]:
                stats["answered"] += 1
                lat.append(now - self.sent_at)

    loop = asyncio.get_running_loop()
    chargers: list[Charger] = []
    sem = asyncio.Semaphore(100)

    async def connect(i: int) -> None:
        async with sem:
            _, c = await ws_connect(Charger, f"{url}/MC{i:05d}", extra_headers={"Sec-WebSocket-Protocol": "ocpp1.6"})
            c.booted = loop.create_future()
            c.send(b"BootNotification", boot)
            await asyncio.wait_for(c.booted, 10)
            chargers.append(c)

    await asyncio.gather(*(connect(i) for i in range(n)))
    per_tick = rate * TICK_S
    credit, k, slot = 0.0, 0, 0
    start = loop.time()
    cpu0 = t0 = 0.0
    k0, sys0 = (0, 0), 0.0
    sent_measured = 0
    next_tick = start
    while True:
        now = loop.time()
        if not measuring[0] and now - start >= warmup:
            measuring[0] = True
            cpu0, t0, sent_measured = cpu_s(pid), time.monotonic(), 0
            k0, sys0 = kernel_counts(pid), sys_s(pid)
        if now - start >= duration:
            break
        credit += per_tick
        while credit >= 1:
            credit -= 1
            c = chargers[k % n]
            k += 1
            if c.busy:  # one outstanding CALL per charger (OCPP-J): the gateway is behind, count it
                stats["skipped"] += 1
                continue
            heartbeat = ((slot * 37) % 100) < 20  # the harness's 20 % Heartbeat pattern
            c.send(b"Heartbeat", b"{}") if heartbeat else c.send(b"MeterValues", meters[slot % len(meters)])
            slot += 1
            stats["sent"] += 1
            if measuring[0]:
                sent_measured += 1
        next_tick += TICK_S
        await asyncio.sleep(max(0.0, next_tick - loop.time()))
    window = time.monotonic() - t0
    await asyncio.sleep(0.5)  # let the last answers in
    cpu = cpu_s(pid) - cpu0
    k1, sys1 = kernel_counts(pid), sys_s(pid)
    for c in chargers:
        c.t.send_close()
        c.t.disconnect()
    ms = sorted(x / 1e6 for x in lat)

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, int(p * len(ms)))] if ms else float("nan")

    return {
        "n": n,
        "offered_per_s": rate,
        "answered_per_s": round(stats["answered"] / window, 1),
        "skipped": stats["skipped"],
        "errors": stats["errors"],
        "p50_ms": round(pct(0.50), 3),
        "p90_ms": round(pct(0.90), 3),
        "p99_ms": round(pct(0.99), 3),
        "max_ms": round(ms[-1], 3) if ms else None,
        "target_cpu_pct": round(100 * cpu / (window + 0.5), 1),
        "target_cpu_us_per_rt": round(1e6 * cpu / max(1, stats["answered"]), 1),
        "target_sys_us_per_rt": round(1e6 * (sys1 - sys0) / max(1, stats["answered"]), 1),
        "minflt_per_s": round((k1[0] - k0[0]) / (window + 0.5), 1),
        "ctxsw_per_s": round((k1[1] - k0[1]) / (window + 0.5), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=5000.0, help="CALLs per second offered, all chargers together")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--targets", default=",".join(TARGETS))
    args = ap.parse_args()
    if not (1 <= args.n <= 5000 and 0 < args.rate <= 20000 and 0 < args.duration <= 60):
        raise SystemExit("bounds: 1 <= n <= 5000, 0 < rate <= 20000, 0 < duration <= 60")
    targets = args.targets.split(",")
    stamp = time.strftime("%Y-%m-%dT%H%M%SZ", time.gmtime())
    out = ROOT / "bench" / "results" / f"mirror-cost-{stamp}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ocppgw-mirror-cost-") as tmp, redis_server(Path(tmp)) as redis_url:
        procs = Procs(Path(tmp))
        try:
            urls = start_targets(procs, targets, redis_url)
            for rep in range(1, args.reps + 1):
                for t in targets:
                    print(f"rep={rep} target={t}", file=sys.stderr)
                    url, pid = urls[t]
                    row = asyncio.run(offered_load(url, pid, args.n, args.rate, args.duration, args.warmup))
                    row.update(target=t, rep=rep)
                    rows.append(row)
                    with out.open("a") as fh:
                        fh.write(json.dumps(row) + "\n")
                    time.sleep(1)
        finally:
            procs.stop_all()
    print(report(rows, args, stamp))
    out.with_suffix(".md").write_text(report(rows, args, stamp) + "\n")


def report(rows: list[dict[str, Any]], args: argparse.Namespace, stamp: str) -> str:
    by = {(r["target"], r["rep"]): r for r in rows}
    keys = ("answered_per_s", "p50_ms", "p90_ms", "p99_ms", "target_cpu_us_per_rt", "minflt_per_s", "ctxsw_per_s")
    lines = [
        f"Batch {stamp}: N={args.n}, {args.rate:.0f} CALLs/s offered, {args.duration:.0f} s per run "
        f"({args.warmup:.0f} s warm-up), {args.reps} reps; medians; ratio = median over reps of (target / its "
        "store's no-mirror target in the same rep)",
        "",
        "| target | answered/s | p50 ms | p90 ms | p99 ms | gateway CPU µs/round trip | page faults/s | "
        "context switches/s | skipped | p50 ratio | p99 ratio | CPU ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in dict.fromkeys(r["target"] for r in rows):
        mine = [r for r in rows if r["target"] == t]
        med = {k: statistics.median(r[k] for r in mine) for k in keys if all(k in r for r in mine)}
        ratios = ["", "", ""]
        if t in BASE:
            pairs = [(r, by.get((BASE[t], r["rep"]))) for r in mine]
            pairs = [(r, b) for r, b in pairs if b is not None]
            if pairs:
                ratios = [
                    f"{statistics.median(r[k] / b[k] for r, b in pairs):.2f}x"
                    for k in ("p50_ms", "p99_ms", "target_cpu_us_per_rt")
                ]
        lines.append(
            f"| {t} | {med['answered_per_s']:,.0f} | {med['p50_ms']:.2f} | {med['p90_ms']:.2f} | {med['p99_ms']:.2f} "
            f"| {med['target_cpu_us_per_rt']:.1f} | {med.get('minflt_per_s', 0):,.0f} "
            f"| {med.get('ctxsw_per_s', 0):,.0f} "
            f"| {sum(r['skipped'] for r in mine)} | " + " | ".join(ratios) + " |"
        )
    lines.append("")
    for t, base in BASE.items():
        pairs = [(by[(t, rep)], by[(base, rep)]) for (x, rep) in by if x == t and (base, rep) in by]
        if pairs:
            spread = []
            for k in ("p50_ms", "p99_ms", "target_cpu_us_per_rt"):
                values = sorted(r[k] / b[k] for r, b in pairs)
                spread.append(f"{values[0]:.2f}-{values[-1]:.2f}")
            lines.append(
                f"Ratios over reps, {t} / {base}: p50 {spread[0]}, p99 {spread[1]}, CPU {spread[2]} (min-max)  "
            )
    # The same ratios between the two no-mirror targets (Redis vs memory store), which cost about the same.
    pairs = [(by[("gateway-redis", rep)], by[("gateway", rep)]) for (t, rep) in by if t == "gateway"]
    pairs = [(r, b) for r, b in pairs if r is not None]
    if pairs and all(("gateway-redis", b["rep"]) in by for _, b in pairs):
        spread = []
        for k in ("p50_ms", "p99_ms", "target_cpu_us_per_rt"):
            values = sorted(r[k] / b[k] for r, b in pairs)
            spread.append(f"{statistics.median(values):.2f}x ({values[0]:.2f}-{values[-1]:.2f})")
        lines += [
            "",
            "Noise reference, gateway-redis / gateway (neither has a mirror): p50 "
            + spread[0]
            + ", p99 "
            + spread[1]
            + ", CPU "
            + spread[2]
            + " (median, min-max over reps)",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    _ = (PY, STUB_PORT)  # the harness's interpreter and stub port, as compare.py uses them
    main()
