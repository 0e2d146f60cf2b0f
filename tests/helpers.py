"""Test peers: a scriptable CSMS stand-in and a raw charger, both real WebSockets on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from gateway.config import Config, parse_config
from gateway.ops.lifecycle import Running, running_gateway

Answer = Callable[[str, str, dict[str, Any]], Awaitable[Any] | Any]


def make_config(backends: Mapping[str, Any], store: str = "memory://", **sections: Any) -> Config:
    """A config on ephemeral ports; ``backends`` maps name -> url or dict; one route "*" -> first backend."""
    bk = {n: (v if isinstance(v, dict) else {"url": v}) for n, v in backends.items()}
    raw: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": 0, "ping_interval_s": 0},
        "admin": {"host": "127.0.0.1", "port": 0},
        "store": {"url": store},
        "backends": bk,
        "routes": [{"match": "*", "primary": next(iter(bk))}],
        "logging": {"level": "warning", "format": "json"},
        "session": {"shutdown_grace_s": 1},
    }
    for k, v in sections.items():
        raw[k] = {**raw.get(k, {}), **v} if isinstance(v, dict) else v
    return parse_config(raw, env={})


@asynccontextmanager
async def gateway(config: Config) -> AsyncIterator[Running]:
    async with running_gateway(config) as r:
        yield r


@dataclass
class StubCsms:
    """A CSMS stand-in: answers CALLs with ``answer(charger_id, action, payload)`` (default ``{}``)."""

    answer: Answer | None = None
    subprotocols: tuple[str, ...] = ("ocpp1.6", "ocpp2.0.1")
    received: list[tuple[str, list[Any]]] = field(default_factory=list)
    #: every text frame as it arrived (received holds those that parse as JSON arrays)
    texts: list[tuple[str, str]] = field(default_factory=list)
    sockets: dict[str, web.WebSocketResponse] = field(default_factory=dict)
    connects: list[str] = field(default_factory=list)
    frame_event: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""
    runner: web.AppRunner | None = None
    port: int = 0

    async def handler(self, request: web.Request) -> web.StreamResponse:
        cid = request.match_info["cid"]
        ws = web.WebSocketResponse(protocols=self.subprotocols)
        await ws.prepare(request)
        self.sockets[cid] = ws
        self.connects.append(cid)
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            self.texts.append((cid, msg.data))
            self.frame_event.set()
            try:
                frame = json.loads(msg.data)
            except (ValueError, RecursionError):
                continue  # the gateway sent something malformed: texts has it, for the test to see
            if not isinstance(frame, list) or not frame:
                continue
            self.received.append((cid, frame))
            if frame[0] == 2 and len(frame) == 4:
                result = self.answer(cid, frame[2], frame[3]) if self.answer else {}
                if asyncio.iscoroutine(result):
                    result = await result
                if result is not None:
                    await ws.send_str(json.dumps([3, frame[1], result]))
        if self.sockets.get(cid) is ws:
            del self.sockets[cid]
        return ws

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.router.add_get("/ocpp/{cid}", self.handler)
        self.runner = web.AppRunner(app, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"ws://127.0.0.1:{self.port}/ocpp"
        return self.url

    async def stop(self) -> None:
        for ws in list(self.sockets.values()):
            await ws.close()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def wait_for(self, pred: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not pred():
                self.frame_event.clear()
                await self.frame_event.wait()

    def actions(self, cid: str | None = None) -> list[str]:
        return [f[2] for c, f in self.received if f[0] == 2 and (cid is None or c == cid)]


@asynccontextmanager
async def stub_csms(answer: Answer | None = None, **kw: Any) -> AsyncIterator[StubCsms]:
    csms = StubCsms(answer=answer, **kw)
    await csms.start()
    try:
        yield csms
    finally:
        await csms.stop()


@asynccontextmanager
async def raw_charger(url: str, cid: str, protocol: str = "ocpp1.6") -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/{cid}", protocols=(protocol,)) as ws:
        yield ws


async def recv_json(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> list[Any]:
    msg = await ws.receive(timeout=timeout)
    assert msg.type is aiohttp.WSMsgType.TEXT, f"expected a text frame, got {msg.type} {msg.data!r}"
    return list(json.loads(msg.data))
