"""Start, run and stop a whole gateway: store, write-behind, HTTP client, charger and admin listeners, sweeper.

:func:`running_gateway` is an async context manager used by the CLI, the demo and the tests alike (one code path):
it yields a :class:`Running` with the bound ports (port 0 in the config picks a free one). Leaving it drains:

1. stop accepting (listening socket closed; handshakes in progress get 503);
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

from aiohttp import web

from gateway.admin import admin_app
from gateway.config import Config
from gateway.logging import get_logger
from gateway.metrics import Metrics
from gateway.router import Router
from gateway.server import Gateway, Handshake
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
    gw = Gateway(config=config, metrics=metrics, store=store, writer=writer, router=Router(config))
    loop = asyncio.get_running_loop()
    sweeper = loop.create_task(gw.sweep(), name="sweeper")
    admin_runner = web.AppRunner(admin_app(gw), handle_signals=False, access_log=None)
    server: asyncio.Server | None = None
    admin_started = False
    try:
        lst = config.listen
        server = await loop.create_server(lambda: Handshake(gw), lst.host, lst.port, backlog=4096, reuse_address=True)
        await admin_runner.setup()
        admin_started = True
        site = web.TCPSite(admin_runner, config.admin.host, config.admin.port)
        await site.start()
        running = Running(gw, int(server.sockets[0].getsockname()[1]), _bound_port(admin_runner))
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
        gw.draining = True
        if server is not None:
            server.close()  # stop accepting; open connections stay until drained
        await gw.drain(config.session.shutdown_grace_s)
        sweeper.cancel()
        await asyncio.gather(sweeper, return_exceptions=True)
        if admin_started:
            await admin_runner.cleanup()
        await writer.close(timeout=5.0)
        await store.close()
        log.info("gateway_stopped", node=gw.node)


async def serve(config: Config, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set (SIGTERM/SIGINT in the CLI), then drain and return."""
    old, new = raise_fd_limit()
    log = get_logger()
    if new > old:
        log.info("fd_limit_raised", soft_from=old, soft_to=new)
    async with running_gateway(config):
        await stop.wait()
        log.info("shutdown_requested")
