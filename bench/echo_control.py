"""A control for round-trip tails measured on this machine: two processes that are not the gateway.

    .venv/bin/python bench/echo_control.py --seconds 20       # alone: the machine's floor
    # during a storm, in another shell, once its phase starts:
    .venv/bin/python bench/reconnect_storm.py -n 10000 --profile 2 --cache --prefill --procs 3 --workers 2 &
    .venv/bin/python bench/echo_control.py --seconds 20

An echo server in a child process and 20 clients here, each sending one byte every 0.1 s over loopback TCP and
waiting for it back (the steady chargers' pattern of bench/reconnect_storm.py, without the gateway and without
WebSocket or TLS). Its p99 during a storm is what the machine's scheduling alone adds to a round trip of two
processes when the cores are full; a steady charger's round trip crosses four processes (client, gateway worker,
CSMS stand-in, gateway worker again). Prints one JSON line: round trips, p50 and p99 in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time

sys.path.insert(0, __file__.rsplit("/", 1)[0])

from compare import free_port, wait_port


async def serve(port: int) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(64):
            writer.write(data)

    server = await asyncio.start_server(echo, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


async def measure(port: int, clients: int, interval_s: float, seconds: float) -> list[float]:
    rtts: list[float] = []

    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t0 = time.perf_counter()
            writer.write(b"x")
            await reader.read(64)
            rtts.append(time.perf_counter() - t0)
            await asyncio.sleep(interval_s)
        writer.close()

    await asyncio.gather(*(one() for _ in range(clients)))
    return sorted(rtts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="<= 300")
    ap.add_argument("--serve", type=int, default=0, help=argparse.SUPPRESS)  # the child: echo on this port
    args = ap.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return
    if not 0 < args.seconds <= 300:
        raise SystemExit("--seconds must be in (0, 300]")
    port = free_port()
    child = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    try:
        wait_port(port)
        rtts = asyncio.run(measure(port, 20, 0.1, args.seconds))
    finally:
        child.terminate()
        child.wait(10)
    p = lambda q: round(1000 * rtts[min(len(rtts) - 1, int(q * len(rtts)))], 2)  # noqa: E731
    print(json.dumps({"bench": "echo_control", "round_trips": len(rtts), "p50_ms": p(0.5), "p99_ms": p(0.99)}))


if __name__ == "__main__":
    main()
