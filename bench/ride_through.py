"""Ride-through bench: N chargers ride through a CSMS outage; every CALL they sent meanwhile must reach the CSMS once,
in order, paced at the configured replay rate.

    .venv/bin/python bench/ride_through.py                       # 1,000 chargers, 10 minutes of outage in ~60 s
    .venv/bin/python bench/ride_through.py -n 200 --outage-min 5 --compress 10 --replay-per-s 200

What runs (loopback only, every process started and stopped here): ``ocpp-gateway run`` (the venv's) with a
generated config (the Redis store on a redis-server of its own on a free port, one 1.6 backend with
``replay_per_s``, one route ``offline: {mode: ride_through}``, ``reconnect_grace_s: 1``); in this process, a CSMS
stand-in (aiohttp: answers every CALL, records every unique id it receives) and N raw 1.6 chargers (aiohttp).

Phases: (1) every charger connects, boots and authorizes its tag (the gateway learns the boot interval and the tag);
(2) the CSMS stops; ``--outage-min`` minutes of each charger's traffic are sent in ``outage-min * 60 / compress``
seconds: a StatusNotification, a StartTransaction, a MeterValues per simulated minute, a Heartbeat every 5, the
StopTransaction, a StatusNotification (each charger one CALL at a time, waiting for the gateway's answer, the start
of each charger spread over the first simulated minute); (3) the CSMS starts again on its port: the journals are
replayed; the run ends when every charger's journal is empty (the admin API) or at ``--timeout``.

Reported (``bench/results/ride-through-<UTC>.md``, and stdout): sent (CALLs the chargers sent during the outage),
answered (by the gateway), journalled (the gateway's ``ocppgw_ride_through_messages_total{outcome="journalled"}``),
delivered (distinct unique ids of outage CALLs the CSMS received), duplicated (unique ids received more than once),
lost (sent but never delivered), out of order (chargers whose CALLs arrived in another order than sent), the
replay's duration and observed rate against the configured one, and the gateway's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]

from compare import free_port, redis_server, wait_port  # noqa: E402

GATEWAY = str(Path(sys.executable).parent / "ocpp-gateway")
REPLAYED = 'ocppgw_ride_through_messages_total{backend="csms",outcome="replayed"}'
JOURNALLED = 'ocppgw_ride_through_messages_total{backend="csms",outcome="journalled"}'


class Csms:
    """Answers every CALL; records (charger id, unique id) in arrival order."""

    def __init__(self) -> None:
        self.got: list[tuple[str, str]] = []
        self.first_at = 0.0
        self.last_at = 0.0
        self.port = free_port()
        self.runner: web.AppRunner | None = None
        self.tx = 1000

    async def handle(self, request: web.Request) -> web.StreamResponse:
        cid = request.match_info["cid"]
        ws = web.WebSocketResponse(protocols=("ocpp1.6",))
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            if frame[0] != 2:
                continue
            uid, action = frame[1], frame[2]
            now = time.monotonic()
            if uid.startswith("o"):
                self.first_at = self.first_at or now
                self.last_at = now
            self.got.append((cid, uid))
            answer: dict[str, Any] = {}
            if action == "BootNotification":
                answer = {"status": "Accepted", "currentTime": _now(), "interval": 300}
            elif action == "Heartbeat":
                answer = {"currentTime": _now()}
            elif action in ("Authorize", "StopTransaction"):
                answer = {"idTagInfo": {"status": "Accepted"}}
            elif action == "StartTransaction":
                self.tx += 1
                answer = {"idTagInfo": {"status": "Accepted"}, "transactionId": self.tx}
            await ws.send_str(json.dumps([3, uid, answer]))
        return ws

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/ocpp/{cid}", self.handle)
        self.runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, backlog=4096).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Charger:
    def __init__(self, cid: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.cid = cid
        self.ws = ws
        self.n = 0
        self.sent: list[str] = []
        self.answered = 0
        self.errors = 0

    async def call(self, action: str, payload: dict[str, Any], outage: bool) -> list[Any] | None:
        self.n += 1
        uid = f"{'o' if outage else 'l'}{self.n}.{self.cid}"
        await self.ws.send_str(json.dumps([2, uid, action, payload]))
        if outage:
            self.sent.append(uid)
        try:
            msg = await self.ws.receive(timeout=60)
        except TimeoutError:
            self.errors += 1
            return None
        if msg.type is not aiohttp.WSMsgType.TEXT:
            self.errors += 1
            return None
        frame = json.loads(msg.data)
        if frame[0] == 3:
            self.answered += outage
            return list(frame)
        self.errors += 1
        return None


async def outage_traffic(ch: Charger, minutes: int, compress: float) -> None:
    """One charger's ``minutes`` of traffic, sent ``compress`` times faster."""
    minute = 60.0 / compress
    await asyncio.sleep(random.random() * minute)
    await ch.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Preparing",
                                         "timestamp": _now()}, True)  # fmt: skip
    got = await ch.call("StartTransaction", {"connectorId": 1, "idTag": "BENCH-TAG", "meterStart": 0,
                                             "timestamp": _now()}, True)  # fmt: skip
    tx = got[2].get("transactionId", 0) if got else 0
    for m in range(minutes):
        await asyncio.sleep(minute * (0.8 + 0.4 * random.random()))
        mv = [{"timestamp": _now(), "sampledValue": [{"value": str(1000 * (m + 1)), "unit": "Wh"}]}]
        await ch.call("MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": mv}, True)
        if m % 5 == 4:
            await ch.call("Heartbeat", {}, True)
    await ch.call("StopTransaction", {"transactionId": tx, "meterStop": 1000 * minutes, "timestamp": _now()}, True)
    await ch.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available",
                                         "timestamp": _now()}, True)  # fmt: skip


def scrape(admin: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("ocppgw_ride_through_"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
    return out


def riding(admin: int) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/api/ride-through", timeout=10) as r:
        return [c for c in json.loads(r.read())["chargers"] if c["state"] != "live" or c["journal_depth"]]


def rss_kb(pid: int) -> int:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


async def run(args: argparse.Namespace, work: Path, redis_url: str) -> dict[str, Any]:
    csms = Csms()
    await csms.start()
    port, admin = free_port(), free_port()
    cfg = {
        "listen": {"host": "127.0.0.1", "port": port, "ping_interval_s": 0},
        "admin": {"host": "127.0.0.1", "port": admin},
        "store": {"url": redis_url},
        "backends": {"csms": {"url": f"ws://127.0.0.1:{csms.port}/ocpp", "reconnect_grace_s": 1,
                              "replay_per_s": args.replay_per_s}},
        "routes": [{"match": "*", "primary": "csms", "offline": {"mode": "ride_through"}}],
        "logging": {"level": "warning", "format": "json"},
        "session": {"call_timeout_s": 60},
    }  # fmt: skip
    (work / "gw.yaml").write_text(yaml.safe_dump(cfg))
    log = open(work / "gw.log", "wb")
    gw = subprocess.Popen([GATEWAY, "run", "--config", str(work / "gw.yaml")], stdout=log, stderr=subprocess.STDOUT)
    result: dict[str, Any] = {}
    try:
        wait_port(port, 30)
        conn = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=conn) as http:
            chargers: list[Charger] = []
            sem = asyncio.Semaphore(100)

            async def connect(i: int) -> None:
                cid = f"RT{i:05d}"
                async with sem:
                    ws = await http.ws_connect(f"ws://127.0.0.1:{port}/ocpp/{cid}", protocols=("ocpp1.6",))
                ch = Charger(cid, ws)
                await ch.call("BootNotification", {"chargePointVendor": "Bench", "chargePointModel": "RT"}, False)
                await ch.call("Authorize", {"idTag": "BENCH-TAG"}, False)
                chargers.append(ch)

            await asyncio.gather(*(connect(i) for i in range(args.n)))
            await asyncio.sleep(1.5)  # the learned boot interval and tag are written behind
            print(f"{len(chargers)} chargers connected and booted", file=sys.stderr)
            await csms.stop()
            t0 = time.monotonic()
            await asyncio.gather(*(outage_traffic(ch, args.outage_min, args.compress) for ch in chargers))
            outage_s = time.monotonic() - t0
            sent = sum(len(c.sent) for c in chargers)
            answered = sum(c.answered for c in chargers)
            print(f"outage traffic: {sent} CALLs in {outage_s:.1f} s, {answered} answered", file=sys.stderr)
            before = scrape(admin)
            await csms.start()
            t_up = time.monotonic()
            deadline = t_up + args.timeout
            while time.monotonic() < deadline:
                await asyncio.sleep(1.0)
                if not riding(admin):
                    break
            replay_s = time.monotonic() - t_up
            after = scrape(admin)
            for ch in chargers:
                await ch.ws.close()
        got = csms.got
        counts = Counter(uid for _, uid in got if uid.startswith("o"))
        sent_ids = {uid for ch in chargers for uid in ch.sent}
        delivered = len(set(counts) & sent_ids)
        order_bad = 0
        by_charger: dict[str, list[str]] = {}
        for cid, uid in got:
            if uid.startswith("o"):
                by_charger.setdefault(cid, []).append(uid)
        for ch in chargers:
            seen: list[str] = []
            for uid in by_charger.get(ch.cid, []):
                if not seen or seen[-1] != uid:
                    seen.append(uid)
            order_bad += seen != ch.sent
        span = csms.last_at - max(csms.first_at, t_up)
        journalled = after.get(JOURNALLED, 0)
        result = {
            "ts": datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ"),
            "chargers": len(chargers),
            "outage_simulated_min": args.outage_min,
            "outage_real_s": round(outage_s, 1),
            "sent": sent,
            "answered_by_gateway": answered,
            "charger_errors": sum(c.errors for c in chargers),
            "journalled": int(journalled),
            "delivered": delivered,
            "duplicated": sum(1 for n in counts.values() if n > 1),
            "lost": len(sent_ids - set(counts)),
            "out_of_order_chargers": order_bad,
            "replay_s": round(replay_s, 1),
            "replay_rate_configured": args.replay_per_s,
            "replay_rate_observed": round(delivered / span, 1) if span > 0 else None,
            "replayed_metric": int(after.get(REPLAYED, 0) - before.get(REPLAYED, 0)),
            "divergences": int(sum(v for k, v in after.items() if k.startswith("ocppgw_ride_through_divergences"))),
            "gateway_peak_rss_mb": round(rss_kb(gw.pid) / 1024, 1),
        }
    finally:
        await csms.stop()
        gw.terminate()
        try:
            gw.wait(30)
        except subprocess.TimeoutExpired:
            gw.kill()
        log.close()
    return result


def write_md(r: dict[str, Any], argv: list[str]) -> Path:
    out = ROOT / "bench" / "results" / f"ride-through-{r['ts']}.md"
    rows = "\n".join(f"| {k} | {v} |" for k, v in r.items())
    out.write_text(
        f"# Ride-through bench, {r['ts']}\n\n`.venv/bin/python bench/ride_through.py {' '.join(argv)}`\n\n"
        f"{r['chargers']} chargers; the CSMS down for {r['outage_simulated_min']} simulated minutes of traffic, sent "
        f"in {r['outage_real_s']} s; then the CSMS back and the journals replayed at "
        f"`replay_per_s: {r['replay_rate_configured']}`. Machine: {os.cpu_count()} CPUs (`nproc`); the gateway one "
        "process, the chargers and the CSMS stand-in in the bench's process, Redis on loopback.\n\n"
        f"| figure | value |\n|---|---|\n{rows}\n"
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=1000, help="chargers (default 1000, at most 5000)")
    ap.add_argument("--outage-min", type=int, default=10, help="simulated minutes of outage traffic (default 10)")
    ap.add_argument("--compress", type=float, default=10.0, help="how much faster than real time (default 10)")
    ap.add_argument("--replay-per-s", type=float, default=500.0, help="backends.csms.replay_per_s (default 500)")
    ap.add_argument("--timeout", type=float, default=600.0, help="longest replay waited for, s (default 600)")
    args = ap.parse_args()
    if not 1 <= args.n <= 5000 or not 1 <= args.outage_min <= 60 or args.compress <= 0:
        raise SystemExit("bounds: 1 <= n <= 5000, 1 <= outage-min <= 60, compress > 0")
    from gateway.ops.lifecycle import raise_fd_limit

    raise_fd_limit(4 * args.n + 1000)
    with tempfile.TemporaryDirectory(prefix="ocppgw-ride-") as tmp:
        work = Path(tmp)
        with redis_server(work) as redis_url:
            r = asyncio.run(run(args, work, redis_url))
    print(json.dumps(r))
    print(f"written {write_md(r, sys.argv[1:])}", file=sys.stderr)


if __name__ == "__main__":
    main()
