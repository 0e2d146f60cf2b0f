"""What the Redis store's work for a full process costs it: the ownership refresh, and a storm's single reads.

    .venv/bin/python bench/store_cost.py              # 5,000 chargers (one worker's share of a 10,000 storm)
    .venv/bin/python bench/store_cost.py -n 10000 --reps 5

Every ``store.owner_ttl_s / 3`` each gateway process extends the ownership of every charger it holds
(``RedisStore.refresh_owners``: one script call per charger). This starts a redis-server on a free port (loopback,
no persistence), claims N chargers for one node, and refreshes them ``--reps`` times on the stdlib event loop while
a task that does nothing but yield measures the longest pause of the loop (what a charger's frame arriving meanwhile
would wait). Prints, per rep: the refresh's CPU and wall time and the longest pause.

Then the reads of a reconnect storm: N GETs of route keys with 1, 8, 64 and 500 in flight at once, through the
store (``get_route_override``: the reads of one loop iteration share a pipeline) and through redis-py's client
directly (one command, one pool checkout, one send and one read each: what the store did before), on uvloop when
installed as the gateway runs. Prints the CPU per read of this process.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import redis_server

from gateway.store.redis import RedisStore


async def run(url: str, n: int, reps: int) -> None:
    store = RedisStore.from_url(url, "bench")
    cids = [f"CP{i:06d}" for i in range(n)]
    await asyncio.gather(*(store.claim_owner(cid, "node-a", 30) for cid in cids))
    for rep in range(reps):
        longest, stop = 0.0, asyncio.Event()

        async def ticker(stop: asyncio.Event) -> None:
            nonlocal longest
            last = time.perf_counter()
            while not stop.is_set():
                await asyncio.sleep(0)
                now = time.perf_counter()
                longest, last = max(longest, now - last), now

        task = asyncio.create_task(ticker(stop))
        await asyncio.sleep(0)
        t0, c0 = time.perf_counter(), time.process_time()
        lost = await store.refresh_owners("node-a", cids, 30)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        stop.set()
        await task
        print(
            f"rep {rep}: {n} chargers refreshed, cpu {cpu * 1e3:.1f} ms, wall {wall * 1e3:.1f} ms, "
            f"longest loop pause {longest * 1e3:.1f} ms, lost {len(lost)}"
        )
    await store.close()


async def reads(url: str, n: int) -> None:
    store = RedisStore.from_url(url, "bench")
    direct = RedisStore.from_url(url, "bench")._r  # the client alone, as the store's reads were sent before
    cids = [f"CP{i:06d}" for i in range(n)]
    for at_once in (1, 8, 64, 500):
        for how in ("store", "client"):
            gate = asyncio.Semaphore(at_once)

            async def one(cid: str, how: str, gate: asyncio.Semaphore) -> None:
                async with gate:
                    if how == "store":
                        await store.get_route_override(cid)
                    else:
                        await direct.get(store.keys.route(cid))

            c0 = time.process_time()
            await asyncio.gather(*(one(cid, how, gate) for cid in cids))
            cpu = time.process_time() - c0
            print(f"{n} reads, {at_once} at once, {how}: cpu {cpu / n * 1e6:.0f} µs per read")
    await direct.aclose()
    await store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=5000, help="chargers held by the process (<= 50000)")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    if not 1 <= args.n <= 50_000:
        raise SystemExit("-n must be 1..50000")
    with tempfile.TemporaryDirectory() as work, redis_server(Path(work)) as url:
        asyncio.run(run(url, args.n, args.reps))
        try:
            import uvloop

            uvloop.run(reads(url, args.n))
        except ImportError:
            asyncio.run(reads(url, args.n))


if __name__ == "__main__":
    main()
