"""Taps over real sockets: a real redis-server (outboxes, Redis Stream sink) and an aiohttp server as HTTP sink."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
import structlog
from aiohttp import web

from gateway.config import TapConfig, parse_config
from gateway.fanout.taps import Taps
from gateway.metrics import Metrics
from gateway.store import RedisStore, Store, open_store
from gateway.store.keys import Keys

ROUTES = [{"match": "ABB-*", "primary": "a"}, {"match": "*", "primary": "a"}]
FAST = {"flush_interval_s": 0, "retry_initial_s": 0.02, "retry_max_s": 0.1, "timeout_s": 1}


def tap_configs(store_url: str, *taps: dict[str, Any]) -> tuple[TapConfig, ...]:
    raw = {
        "backends": {"a": {"url": "ws://127.0.0.1:9/ocpp"}},
        "routes": ROUTES,
        "store": {"url": store_url, "prefix": "test"},
        "taps": list(taps),
    }
    return parse_config(raw, env={}).taps


class HttpSink:
    """An ingest endpoint on loopback: records every accepted batch per path; answers ``fail`` statuses first."""

    def __init__(self) -> None:
        self.batches: dict[str, list[list[dict[str, Any]]]] = {}
        self.fail: list[int] = []
        self.attempts = 0
        self.recovered = asyncio.Event()
        self.changed = asyncio.Condition()
        self.url = ""

    def events(self, path: str) -> list[dict[str, Any]]:
        return [e for b in self.batches.get(path, []) for e in b]

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if self.fail:
            status = self.fail.pop(0)
            if not self.fail:
                self.recovered.set()
            return web.Response(status=status)
        batch = orjson.loads(await request.read())
        assert isinstance(batch, list) and request.headers["Content-Type"] == "application/json"
        self.batches.setdefault(request.path, []).append(batch)
        async with self.changed:
            self.changed.notify_all()
        return web.Response(status=204)

    async def wait_events(self, path: str, n: int) -> list[dict[str, Any]]:
        async with asyncio.timeout(1.5):
            async with self.changed:
                await self.changed.wait_for(lambda: len(self.events(path)) >= n)
        return self.events(path)


@asynccontextmanager
async def http_sink(port: int = 0) -> AsyncIterator[HttpSink]:
    sink = HttpSink()
    app = web.Application()
    app.router.add_post("/{tap}", sink.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]
    sink.url = f"http://127.0.0.1:{bound}"
    try:
        yield sink
    finally:
        await runner.cleanup()


@pytest.fixture
async def redis_store(redis_url: str) -> AsyncIterator[Store]:
    store = open_store(redis_url, "test")
    yield store
    await store.close()


def keys_of(store: Store) -> Keys:
    """The keys of the prefix the test opened the store with ("test" for Redis)."""
    return Keys("test") if isinstance(store, RedisStore) else Keys()


@asynccontextmanager
async def running(configs: tuple[TapConfig, ...], store: Store, metrics: Metrics | None = None) -> AsyncIterator[Taps]:
    taps = Taps(configs, store, keys_of(store), metrics or Metrics(), structlog.get_logger(), node=secrets.token_hex(3))
    taps.start()
    try:
        yield taps
    finally:
        await taps.close(flush_timeout=1.0)


def offer(taps: Taps, n: int, action: str = "MeterValues", route: str = "config:routes[1]", **kw: str) -> None:
    for i in range(n):
        taps.offer(kw.get("cid", "CP1"), route, kw.get("direction", "from_charger"), kw.get("mtype", "call"),
                   action, f"{kw.get('uid', 'u')}{i}", {"i": i})  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_redis_stream_tap_gets_matching_events_in_order_and_not_the_others(
    redis_url: str, redis_store: Store
) -> None:
    configs = tap_configs(
        redis_url,
        {"name": "billing", "actions": ["StartTransaction", "StopTransaction"], "redis_stream": {"key": "billing"}},
    )
    client = aioredis.from_url(redis_url)
    metrics = Metrics()
    try:
        async with running(configs, redis_store, metrics) as taps:
            offer(taps, 2, "Heartbeat", uid="hb")
            offer(taps, 3, "StartTransaction", uid="start")
            offer(taps, 2, "StatusNotification", uid="st")
            taps.offer("CP9", "override", "from_backend", "callresult", "StopTransaction", "stop", {"ok": True})
            got: list[dict[str, Any]] = []
            last = "0-0"
            async with asyncio.timeout(1.5):
                while len(got) < 4:
                    rows = await client.xread({"billing": last}, block=500)
                    for _, entries in rows:
                        for rid, fields in entries:
                            last = rid
                            got.append(orjson.loads(fields[b"event"]))
        assert [(e["action"], e["unique_id"]) for e in got] == [
            ("StartTransaction", "start0"),
            ("StartTransaction", "start1"),
            ("StartTransaction", "start2"),
            ("StopTransaction", "stop"),
        ]
        assert got[3] == {
            "ts": got[3]["ts"], "charger_id": "CP9", "direction": "from_backend", "message_type": "callresult",
            "action": "StopTransaction", "unique_id": "stop", "payload": {"ok": True},
        }  # fmt: skip
        assert await client.xlen("billing") == 4
        assert await client.xlen("test:tap:billing") == 0  # acknowledged: the outbox is empty
        sample = metrics.registry.get_sample_value
        assert sample("ocppgw_tap_events_total", {"tap": "billing", "result": "delivered"}) == 4
        assert sample("ocppgw_tap_events_total", {"tap": "billing", "result": "offered"}) == 4
    finally:
        await client.aclose()


async def test_http_sink_answering_503_for_a_while_gets_every_event_once_in_order(
    redis_url: str, redis_store: Store
) -> None:
    metrics = Metrics()
    async with http_sink() as sink:
        sink.fail = [503, 503, 500]
        configs = tap_configs(redis_url, {"name": "t", "http": {"url": f"{sink.url}/t", **FAST, "batch": 4}})
        async with running(configs, redis_store, metrics) as taps:
            offer(taps, 5, uid="a")
            async with asyncio.timeout(1):  # more events arrive while the sink is failing
                await sink.recovered.wait()
            offer(taps, 5, uid="b")
            got = await sink.wait_events("/t", 10)
        assert [e["unique_id"] for e in got] == [f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)]
        assert all(len(b) <= 4 for b in sink.batches["/t"])
    sample = metrics.registry.get_sample_value
    assert sample("ocppgw_tap_events_total", {"tap": "t", "result": "failed"}) >= 3
    assert sample("ocppgw_tap_events_total", {"tap": "t", "result": "delivered"}) == 10


async def test_events_for_a_sink_that_is_not_listening_survive_a_restart_and_arrive_once_in_order(
    redis_url: str, redis_store: Store
) -> None:
    port = free_port()
    configs = tap_configs(redis_url, {"name": "t", "http": {"url": f"http://127.0.0.1:{port}/t", **FAST}})
    metrics = Metrics()
    async with running(configs, redis_store, metrics) as taps:
        offer(taps, 3, uid="a")
        async with asyncio.timeout(1):
            while not metrics.registry.get_sample_value("ocppgw_tap_events_total", {"tap": "t", "result": "failed"}):
                await asyncio.sleep(0.01)
        offer(taps, 3, uid="b")  # buffered or in the outbox when the gateway stops
    client = aioredis.from_url(redis_url)
    try:
        assert await client.xlen("test:tap:t") == 6
    finally:
        await client.aclose()
    async with http_sink(port) as sink:
        async with running(configs, redis_store) as taps:
            offer(taps, 2, uid="c")
            got = await sink.wait_events("/t", 8)
    assert [e["unique_id"] for e in got] == ["a0", "a1", "a2", "b0", "b1", "b2", "c0", "c1"]


async def test_filters_by_action_direction_message_type_and_route() -> None:
    store = open_store("memory://")
    async with http_sink() as sink:
        configs = tap_configs(
            "memory://",
            {"name": "act", "actions": ["StartTransaction"], "http": {"url": f"{sink.url}/act", **FAST}},
            {"name": "dir", "directions": ["from_backend"], "http": {"url": f"{sink.url}/dir", **FAST}},
            {"name": "typ", "message_types": ["callresult"], "http": {"url": f"{sink.url}/typ", **FAST}},
            {"name": "abb", "routes": ["ABB-*"], "http": {"url": f"{sink.url}/abb", **FAST}},
        )
        async with running(configs, store) as taps:
            offer(taps, 1, "StartTransaction", uid="start")
            offer(taps, 1, "Heartbeat", uid="backend", direction="from_backend")
            offer(taps, 1, "Heartbeat", uid="result", mtype="callresult")
            offer(taps, 1, "Heartbeat", uid="abb", route="config:routes[0]")
            offer(taps, 1, "Heartbeat", uid="none")
            for path in ("/act", "/dir", "/typ", "/abb"):
                await sink.wait_events(path, 1)
        ids = {p: [e["unique_id"] for e in sink.events(p)] for p in ("/act", "/dir", "/typ", "/abb")}
    assert ids == {"/act": ["start0"], "/dir": ["backend0"], "/typ": ["result0"], "/abb": ["abb0"]}
    await store.close()


async def test_close_delivers_what_is_waiting_without_waiting_for_a_full_batch() -> None:
    store = open_store("memory://")
    async with http_sink() as sink:
        configs = tap_configs(
            "memory://", {"name": "t", "http": {"url": f"{sink.url}/t", "batch": 100, "flush_interval_s": 30}}
        )
        taps = Taps(configs, store, keys_of(store), Metrics(), structlog.get_logger(), node="n")
        taps.start()
        offer(taps, 5)
        await asyncio.sleep(0)
        async with asyncio.timeout(1.5):
            await taps.close(flush_timeout=1.0)
        assert [e["unique_id"] for e in sink.events("/t")] == [f"u{i}" for i in range(5)]
    await store.close()


async def test_close_writes_what_could_not_be_sent_to_the_outbox(redis_url: str, redis_store: Store) -> None:
    configs = tap_configs(redis_url, {"name": "t", "http": {"url": f"http://127.0.0.1:{free_port()}/t", **FAST}})
    taps = Taps(
        configs, redis_store, keys_of(redis_store), Metrics(), structlog.get_logger(), node="n"
    )  # never started: nothing was flushed yet
    offer(taps, 4)
    await taps.close(flush_timeout=0.5)
    client = aioredis.from_url(redis_url)
    try:
        rows = await client.xrange("test:tap:t")
        assert [orjson.loads(f[b"d"])["unique_id"] for _, f in rows] == ["u0", "u1", "u2", "u3"]
    finally:
        await client.aclose()


async def test_two_replicas_on_one_redis_deliver_each_event_once(redis_url: str) -> None:
    stores = [open_store(redis_url, "test"), open_store(redis_url, "test")]
    async with http_sink() as sink:
        configs = tap_configs(redis_url, {"name": "t", "http": {"url": f"{sink.url}/t", **FAST, "batch": 3}})
        async with running(configs, stores[0]) as one, running(configs, stores[1]) as two:
            for i in range(10):
                offer(one, 1, uid=f"one{i}-")
                offer(two, 1, uid=f"two{i}-")
                await asyncio.sleep(0)
            got = await sink.wait_events("/t", 20)
    ids = [e["unique_id"] for e in got]
    assert sorted(ids) == sorted([f"one{i}-0" for i in range(10)] + [f"two{i}-0" for i in range(10)])
    assert [i for i in ids if i.startswith("one")] == [f"one{i}-0" for i in range(10)]
    assert [i for i in ids if i.startswith("two")] == [f"two{i}-0" for i in range(10)]
    for s in stores:
        await s.close()
