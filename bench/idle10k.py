"""10,000 chargers on one gateway process: memory per charger and event-loop lag (a benchmark, not a test).

    .venv/bin/python bench/idle10k.py                 # N=10000, heartbeat every 60 s, 75 s window
    .venv/bin/python bench/idle10k.py -n 2000 --window 20

Starts the shared CSMS stand-in (../shared/bench/csms_stub.py) and ``ocpp-gateway run`` (memory store, pings every
30 s, logging at info), connects N chargers through the gateway (picows clients, BootNotification each), then each
charger sends a Heartbeat every ``--interval`` seconds (first one at a random offset, so the load is even) for
``--window`` seconds. Reports, as one JSON line and a summary: gateway RSS per connected charger (its upstream link
included), the event-loop lag p50/p99/max over the window (from the gateway's own
``ocppgw_event_loop_lag_seconds`` histogram), heartbeat round trips and errors. Loopback only, bounded in N
(<= 20000) and time (<= 300 s). File descriptors: the soft and, as root, hard limits are raised to 65536 first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import picows
import psutil

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OCPPGW_SHARED_BENCH", ROOT.parent / "shared" / "bench"))
PY = sys.executable
GATEWAY = str(Path(PY).parent / "ocpp-gateway")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_nofile(want: int = 65536) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limits in ((want, want), (min(want, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            return limits[0]
        except (ValueError, OSError):
            continue
    return soft


def lag_histogram(admin: int) -> dict[float, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10).read().decode()
    out: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("ocppgw_event_loop_lag_seconds_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return out


def quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """Upper bound of the bucket holding quantile ``q`` of the samples taken between two scrapes."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1]
    if total <= 0:
        return 0.0
    for b, c in zip(bounds, counts, strict=True):
        if c >= q * total:
            return b
    return bounds[-1]


class Charger(picows.WSListener):  # type: ignore[misc]
    def __init__(self, stats: dict[str, Any]) -> None:
        self.stats = stats
        self.sent_at = 0.0
        self.transport: picows.WSTransport | None = None
        self.booted = asyncio.get_running_loop().create_future()

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self.transport = transport
        self.call(b"BootNotification", b'{"chargePointVendor":"Bench","chargePointModel":"Idle10k"}')

    def call(self, action: bytes, payload: bytes) -> None:
        assert self.transport is not None
        self.sent_at = time.perf_counter()
        self.transport.send(
            picows.WSMsgType.TEXT,
            b'[2,"' + str(random.getrandbits(40)).encode() + b'","' + action + b'",' + payload + b"]",
        )

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type is not picows.WSMsgType.TEXT:
            return
        rtt = time.perf_counter() - self.sent_at
        data = frame.get_payload_as_bytes()
        if not data.startswith(b"[3,"):
            self.stats["errors"] += 1
        if not self.booted.done():
            self.booted.set_result(None)
        else:
            self.stats["rtts"].append(rtt)

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        self.stats["disconnects"] += 1
        if not self.booted.done():
            self.booted.set_exception(ConnectionError("disconnected"))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="ocppgw-idle10k-"))
    stub_port, port, admin = free_port(), free_port(), free_port()
    (work / "gw.yaml").write_text(
        f"listen: {{host: 127.0.0.1, port: {port}, path_prefix: /ocpp, ping_interval_s: 30}}\n"
        f"admin: {{host: 127.0.0.1, port: {admin}}}\nstore: {{url: 'memory://'}}\n"
        f"backends: {{bench: {{url: 'ws://127.0.0.1:{stub_port}/ocpp', ocpp: '1.6'}}}}\n"
        "routes: [{match: '*', primary: bench}]\nlogging: {level: info, format: json}\n"
    )
    stub = subprocess.Popen(
        [PY, str(SHARED / "csms_stub.py"), "--port", str(stub_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    gw = subprocess.Popen(
        [GATEWAY, "run", "--config", str(work / "gw.yaml")],
        stdout=open(work / "gw.log", "wb"),
        stderr=subprocess.STDOUT,
    )
    stats: dict[str, Any] = {"rtts": [], "errors": 0, "disconnects": 0}
    chargers: list[Charger] = []
    try:
        for _ in range(200):
            try:
                lag_histogram(admin)
                break
            except OSError:
                await asyncio.sleep(0.05)
        proc = psutil.Process(gw.pid)
        await asyncio.sleep(1.0)
        rss0 = proc.memory_info().rss
        t0 = time.perf_counter()
        sem = asyncio.Semaphore(200)

        async def connect(i: int) -> None:
            async with sem:
                ch = Charger(stats)
                await picows.ws_connect(
                    lambda: ch,
                    f"ws://127.0.0.1:{port}/ocpp/IDLE{i:05d}",
                    extra_headers={"Sec-WebSocket-Protocol": "ocpp1.6"},
                )
                await ch.booted
                chargers.append(ch)

        results = await asyncio.gather(*(connect(i) for i in range(args.n)), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        connect_s = time.perf_counter() - t0
        await asyncio.sleep(2.0)
        rss1 = proc.memory_info().rss
        before = lag_histogram(admin)
        loop = asyncio.get_running_loop()
        end = loop.time() + args.window
        next_beat = [loop.time() + random.uniform(0, args.interval) for _ in chargers]
        while loop.time() < end:
            now = loop.time()
            for i, ch in enumerate(chargers):
                if next_beat[i] <= now:
                    ch.call(b"Heartbeat", b"{}")
                    next_beat[i] += args.interval
            await asyncio.sleep(0.05)
        after = lag_histogram(admin)
        rtts = sorted(stats["rtts"])
        n_ok = len(chargers)
        return {
            "bench": "idle10k",
            "n": args.n,
            "connected": n_ok,
            "connect_failed": len(failed),
            "connect_all_s": round(connect_s, 2),
            "window_s": args.window,
            "interval_s": args.interval,
            "rss_before_mb": round(rss0 / 2**20, 1),
            "rss_after_mb": round(rss1 / 2**20, 1),
            "rss_per_charger_kb": round((rss1 - rss0) / max(1, n_ok) / 1024, 1),
            "loop_lag_p50_ms_le": quantile(before, after, 0.5) * 1000,
            "loop_lag_p99_ms_le": quantile(before, after, 0.99) * 1000,
            "loop_lag_samples": after.get(float("inf"), 0) - before.get(float("inf"), 0),
            "heartbeats": len(rtts),
            "hb_p50_ms": round(rtts[len(rtts) // 2] * 1000, 2) if rtts else None,
            "hb_p99_ms": round(rtts[int(len(rtts) * 0.99)] * 1000, 2) if rtts else None,
            "errors": stats["errors"],
            "disconnects": stats["disconnects"],
            "gateway_cpu_s": round(sum(proc.cpu_times()[:2]), 1),
        }
    finally:
        for ch in chargers:
            if ch.transport is not None:
                ch.transport.disconnect()
        gw.terminate()
        stub.terminate()
        gw.wait(30)
        stub.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--interval", type=float, default=60.0, help="heartbeat interval per charger, s")
    ap.add_argument("--window", type=float, default=75.0, help="observation window after all connected, s")
    args = ap.parse_args()
    if not 1 <= args.n <= 20000 or not 1 <= args.window <= 300:
        raise SystemExit("bounded: 1 <= n <= 20000, 1 <= window <= 300")
    nofile = raise_nofile()
    if nofile < 2 * args.n + 50:
        raise SystemExit(f"file descriptor limit {nofile} is too low for {args.n} chargers")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(run(args))
    print(json.dumps(result))
    print(
        f"{result['connected']} chargers, {result['rss_per_charger_kb']} KB RSS each (upstream link included), "
        f"event-loop lag p99 <= {result['loop_lag_p99_ms_le']:g} ms, heartbeat p99 {result['hb_p99_ms']} ms, "
        f"errors {result['errors']}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
