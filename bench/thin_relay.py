#!/usr/bin/env python3
"""The thinnest picows relay: the Python floor the gateway's hot path is measured against (issue 17, part 2).

    .venv/bin/python bench/thin_relay.py --port 18400 --upstream ws://127.0.0.1:18001/ocpp [--uvloop]

Per charger one upstream picows client connection, opened when the charger's upgrade is accepted, to
``<upstream>/<the charger's path tail>`` with the subprotocol the charger offered first; the charger's socket is
not read until the upstream is up (its frames wait in the kernel). Frames are forwarded both ways as they come,
unparsed (payload, opcode and FIN bit: fragments pass as fragments); a close frame from either side is sent on to
the other with its code, and either socket's end ends the other. No OCPP, no JSON, no state, no logging, no
metrics: one ``on_ws_frame`` callback and one ``send`` per frame.

The transports are set up like the gateway's (``gateway/edge``, ``gateway/links``): picows without aiofastnet, a
2 KiB initial read buffer, no auto-ping task, 64 KiB max frame, so that CPU and memory per charger compare like for
like. It runs under the shared harness's ``GATEWAY_CMD`` too (``--port`` and ``--upstream`` are all it needs):

    GATEWAY_CMD="$PWD/.venv/bin/python $PWD/bench/thin_relay.py --port {port} --upstream {upstream}" \\
      GATEWAY_NAME=relay ../shared/bench/run_all.sh

Loopback only. A bench target, not part of the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Callable
from typing import Any

from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_connect,
    ws_create_server,
)

READ_BUFFER = 2048  # as the gateway's gateway.transport.READ_BUFFER
MAX_FRAME = 65536
CLOSE = WSMsgType.CLOSE
_OPENING: set[asyncio.Task[None]] = set()


class _Side(WSListener):
    """One socket of a relayed pair; ``peer`` is the other socket's transport (None until both are up)."""

    __slots__ = ("other", "peer", "transport")

    def __init__(self) -> None:
        self.peer: WSTransport | None = None
        self.other: _Side | None = None
        self.transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        peer = self.peer
        mt = frame.msg_type
        if mt is CLOSE:
            code = frame.get_close_code()
            if peer is not None and not peer.is_close_frame_sent:
                peer.send_close(code if code.value else WSCloseCode.OK)
                peer.disconnect()
            if not transport.is_close_frame_sent:
                transport.send_close(code if code.value else WSCloseCode.OK)
            transport.disconnect()
        elif peer is not None and mt is not WSMsgType.PING and mt is not WSMsgType.PONG:
            peer.send(mt, frame.get_payload_as_memoryview(), frame.fin)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        peer, self.peer = self.peer, None
        if peer is not None and not peer.is_disconnected:
            peer.disconnect()
        other = self.other
        if other is not None:
            other.peer = None


class _Charger(_Side):
    """The charger's side: opens its upstream once upgraded; reads nothing from the charger until it is up."""

    __slots__ = ("path", "protocol", "upstream")

    def __init__(self, upstream: str, path: str, protocol: str | None) -> None:
        super().__init__()
        self.upstream = upstream
        self.path = path
        self.protocol = protocol

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        transport.underlying_transport.pause_reading()
        task = asyncio.get_running_loop().create_task(self._open())
        _OPENING.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(_OPENING.discard)

    async def _open(self) -> None:
        t = self.transport
        assert t is not None
        headers = {"Sec-WebSocket-Protocol": self.protocol} if self.protocol else None
        up = _Side()
        try:
            ut, _ = await ws_connect(
                lambda: up, self.upstream + self.path, extra_headers=headers, enable_auto_ping=False,
                max_frame_size=MAX_FRAME, read_buffer_init_size=READ_BUFFER, use_aiofastnet=False,
            )  # fmt: skip
        except Exception:  # the upstream is unreachable or refused: so is the charger
            if not t.is_disconnected:
                t.send_close(WSCloseCode.INTERNAL_ERROR, b"upstream unavailable")
                t.disconnect()
            return
        if t.is_disconnected:
            ut.disconnect()
            return
        self.peer, up.peer = ut, t
        self.other, up.other = up, self
        t.underlying_transport.resume_reading()


def make_factory(upstream: str, prefix: bytes = b"/ocpp") -> Callable[[WSUpgradeRequest], Any]:
    def factory(req: WSUpgradeRequest) -> WSUpgradeResponseWithListener | None:
        path = req.path
        if not path.startswith(prefix + b"/") or len(path) <= len(prefix) + 1:
            return None  # 404
        offered = req.headers.get("Sec-WebSocket-Protocol")
        proto = offered.split(",")[0].strip() if offered else None
        extra = {"Sec-WebSocket-Protocol": proto} if proto else None
        listener = _Charger(upstream, path[len(prefix) :].decode(), proto)
        return WSUpgradeResponseWithListener(WSUpgradeResponse.create_101_response(extra_headers=extra), listener)

    return factory


async def serve(port: int, upstream: str) -> None:
    server = await ws_create_server(
        make_factory(upstream.rstrip("/")), "127.0.0.1", port, backlog=4096, enable_auto_ping=False,
        max_frame_size=MAX_FRAME, read_buffer_init_size=READ_BUFFER, use_aiofastnet=False,
    )  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(s, stop.set)
    print(f"thin_relay 127.0.0.1:{port} -> {upstream} pid={os.getpid()}", flush=True)
    await stop.wait()
    server.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=18400)
    ap.add_argument("--upstream", default="ws://127.0.0.1:18001/ocpp")
    ap.add_argument("--uvloop", action="store_true", help="run on uvloop's event loop")
    args = ap.parse_args()
    if not args.upstream.startswith(("ws://127.0.0.1:", "ws://localhost:")):
        raise SystemExit("loopback upstream only")
    if args.uvloop:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(serve(args.port, args.upstream))


if __name__ == "__main__":
    main()
