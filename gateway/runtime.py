"""Start, run and stop a whole gateway: store, write-behind, HTTP client, charger and admin listeners, sweeper.

:func:`running_gateway` is an async context manager used by the CLI, the demo and the tests alike (one code path):
it yields a :class:`Running` with the bound ports (port 0 in the config picks a free one). Leaving it drains:

1. stop accepting (listening sockets closed, new handshakes would get 503);
2. let in-flight CALLs finish, bounded by ``session.shutdown_grace_s``;
3. close every charger with 1001 (going away) and its upstream link;
4. flush the store's write-behind queue (bounded), close the store.
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from gateway.admin import admin_app
from gateway.config import Config
from gateway.logging import get_logger
from gateway.metrics import Metrics
from gateway.router import Router
from gateway.server import Gateway, charger_app
from gateway.store import StateWriter, StoreUnavailable, open_store

__all__ = ["Running", "raise_fd_limit", "running_gateway", "serve"]


@dataclass
class Running:
    gateway: Gateway
    port: int
    admin_port: int

    def charger_url(self, host: str = "127.0.0.1") -> str:
        return f"ws://{host}:{self.port}{self.gateway.config.listen.path_prefix}"

    def admin_url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.admin_port}"


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit (each charger needs two sockets); return (old, new)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft, soft
        return soft, target
    return soft, soft


def _bound_port(runner: web.AppRunner) -> int:
    for site in runner.sites:
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            return int(server.sockets[0].getsockname()[1])
    raise RuntimeError("listener has no socket")


@asynccontextmanager
async def running_gateway(config: Config) -> AsyncIterator[Running]:
    log = get_logger()
    metrics = Metrics()
    store = open_store(config.store.url, config.store.prefix)
    writer = StateWriter(store, metrics, config.store.write_queue_max)
    try:
        await store.ping()
        metrics.store_up.set(1)
    except StoreUnavailable as e:
        # Not fatal: chargers can still be served; writes wait in the queue and /readyz says why.
        metrics.store_up.set(0)
        writer.up = False
        log.error("store_unavailable", error=str(e))
    writer.start()
    # limit=0: the connector must never silently queue charger links behind a pool limit.
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, enable_cleanup_closed=True)
    http = aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",))
    gw = Gateway(config=config, metrics=metrics, store=store, writer=writer, http=http, router=Router(config))
    sweeper = asyncio.get_running_loop().create_task(gw.sweep(), name="sweeper")
    charger_runner = web.AppRunner(charger_app(gw), handle_signals=False, access_log=None, shutdown_timeout=1.0)
    admin_runner = web.AppRunner(admin_app(gw), handle_signals=False, access_log=None)
    started: list[web.AppRunner] = []
    try:
        await charger_runner.setup()
        started.append(charger_runner)
        lst = config.listen
        await web.TCPSite(charger_runner, lst.host, lst.port, backlog=4096, reuse_address=True).start()
        await admin_runner.setup()
        started.append(admin_runner)
        await web.TCPSite(admin_runner, config.admin.host, config.admin.port).start()
        running = Running(gw, _bound_port(charger_runner), _bound_port(admin_runner))
        log.info(
            "gateway_started",
            node=gw.node,
            port=running.port,
            admin_port=running.admin_port,
            store=config.store.url.split("@")[-1],
            backends=sorted(config.backends),
        )
        yield running
    finally:
        await drain(gw, charger_runner in started and charger_runner)
        sweeper.cancel()
        await asyncio.gather(sweeper, return_exceptions=True)
        for r in reversed(started):
            await r.cleanup()
        await http.close()
        await writer.close(timeout=5.0)
        await store.close()
        log.info("gateway_stopped", node=gw.node)


async def drain(gw: Gateway, runner: web.AppRunner | bool) -> None:
    """Stop accepting, let in-flight CALLs finish (bounded), close chargers with 1001."""
    gw.draining = True
    if isinstance(runner, web.AppRunner):
        for site in list(runner.sites):
            server = getattr(site, "_server", None)
            if server is not None:
                server.close()  # stop accepting; open connections stay
    loop = asyncio.get_running_loop()
    deadline = loop.time() + gw.config.session.shutdown_grace_s
    # Polls: one event per session would cost on the hot path; this runs once, bounded by the deadline.
    while loop.time() < deadline and any(not s.idle() for s in gw.sessions.values()):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    if gw.sessions:
        gw.log.info("draining", chargers=len(gw.sessions))
    await asyncio.gather(
        *(gw.close_session(cid, 1001, "gateway shutting down") for cid in list(gw.sockets)), return_exceptions=True
    )


async def serve(config: Config, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set (SIGTERM/SIGINT in the CLI), then drain and return."""
    old, new = raise_fd_limit()
    log = get_logger()
    if new > old:
        log.info("fd_limit_raised", soft_from=old, soft_to=new)
    async with running_gateway(config):
        await stop.wait()
        log.info("shutdown_requested")
