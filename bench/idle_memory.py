"""Where an idle charger's memory goes: tracemalloc over a gateway that holds N idle chargers.

    .venv/bin/python bench/idle_memory.py              # 2,000 chargers
    .venv/bin/python bench/idle_memory.py -n 5000 --top 40

Runs the gateway in this process (the shared harness's config: pass-through 1.6, memory store, uvloop when
installed), the shared CSMS stand-in (``../shared/bench/csms_stub.py``) and the shared load generator in idle mode
(``../shared/bench/load.py --mode idle``: each charger connects, sends a BootNotification and stays) in processes of
their own. After 20 warm-up chargers, tracemalloc snapshots the heap before and after N more connect, and prints
the difference per charger: the Python objects it costs (by file, by line, and the biggest tracebacks), with RSS
for comparison (tracemalloc's own bookkeeping inflates RSS here: bench/compare.py ``--idle`` gives the real
figure). Loopback only; N <= 10,000.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import linecache
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "bench"
sys.path.insert(0, str(ROOT / "bench"))

from compare import free_port  # noqa: E402

from gateway.config import parse_config  # noqa: E402
from gateway.ops.lifecycle import install_loop_policy, running_gateway  # noqa: E402


def rss_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return 0


def idle_clients(port: int, n: int, settle_s: float) -> subprocess.Popen[bytes]:
    argv = [sys.executable, str(SHARED / "load.py"), "--mode", "idle", "-n", str(n), "--quiet-wait", "0"]
    argv += ["--target", f"ws://127.0.0.1:{port}/ocpp", "--settle", str(settle_s)]
    # a session of its own: load.py runs its clients in child processes, which must go when it is stopped
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def stop(clients: subprocess.Popen[bytes]) -> None:
    """Stop load.py and the client processes it started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(clients.pid, signal.SIGKILL)
    clients.wait()


def where(frame: tracemalloc.Frame) -> str:
    text = linecache.getline(frame.filename, frame.lineno).strip()[:90]
    return f"{frame.filename.replace(str(ROOT) + '/', '')}:{frame.lineno}  {text}"


async def run(n: int, top: int) -> None:
    stub_port = free_port()
    stub = subprocess.Popen(
        [sys.executable, str(SHARED / "csms_stub.py"), "--port", str(stub_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await asyncio.sleep(1.0)
        config = parse_config(
            {
                "listen": {"host": "127.0.0.1", "port": 0, "path_prefix": "/ocpp", "max_frame_bytes": 65536,
                           "ping_interval_s": 30},
                "admin": {"host": "127.0.0.1", "port": 0},
                "store": {"url": "memory://"},
                "backends": {"bench": {"url": f"ws://127.0.0.1:{stub_port}/ocpp", "ocpp": "1.6"}},
                "routes": [{"match": "*", "primary": "bench"}],
                "logging": {"level": "warning", "format": "json"},
            },
            env={},
        )  # fmt: skip
        async with running_gateway(config) as gw:
            gc.freeze()
            warm = idle_clients(gw.port, 20, 2)
            while warm.poll() is None:
                await asyncio.sleep(0.2)
            await asyncio.sleep(1)
            gc.collect()
            tracemalloc.start(12)
            before, rss0 = tracemalloc.take_snapshot(), rss_kb()
            clients = idle_clients(gw.port, n, 15 + n / 500)
            try:
                deadline = time.monotonic() + 120
                while len(gw.hub.conns) < n and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                await asyncio.sleep(3)
                gc.collect()
                after, rss1 = tracemalloc.take_snapshot(), rss_kb()
            finally:
                stop(clients)
            held = len(gw.hub.conns)
            by_file = after.compare_to(before, "filename")
            traced = sum(s.size_diff for s in by_file)
            print(f"{held} idle chargers: {traced / held / 1024:.2f} KB of Python objects each (traced); "
                  f"RSS {(rss1 - rss0) / held:.1f} KB each with tracemalloc's bookkeeping")  # fmt: skip
            print("--- by file (bytes, blocks per charger)")
            for s in by_file[:top]:
                print(f"{s.size_diff / held:8.0f} B {s.count_diff / held:6.1f}  {where(s.traceback[0]).split('  ')[0]}")
            print("--- by line")
            for s in after.compare_to(before, "lineno")[:top]:
                print(f"{s.size_diff / held:8.0f} B {s.count_diff / held:6.2f}  {where(s.traceback[0])}")
            print("--- tracebacks of 150 B or more per charger (innermost last)")
            for s in after.compare_to(before, "traceback")[:top]:
                if s.size_diff / held < 150:
                    break
                print(f"{s.size_diff / held:8.0f} B {s.count_diff / held:6.2f}")
                for frame in list(s.traceback)[-4:]:
                    print(f"      {where(frame)}")
    finally:
        stub.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=2000, help="idle chargers (<= 10000)")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    if not 1 <= args.n <= 10_000:
        raise SystemExit("-n must be 1..10000")
    install_loop_policy()
    asyncio.run(run(args.n, args.top))


if __name__ == "__main__":
    main()
