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
import contextlib
import functools
import gc
import resource
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.admin import admin_app
from gateway.auth import CredentialsFileError, import_credentials
from gateway.certs import check_files
from gateway.config import Config, ConfigError
from gateway.fleet import Fleet
from gateway.logging import get_logger
from gateway.looplag import probe_loop_lag
from gateway.metrics import Metrics
from gateway.router import Router
from gateway.security import server_context
from gateway.server import HANDSHAKE_TIMEOUT_S, Gateway, Handshake
from gateway.store import StateWriter, StoreUnavailable, open_store
from gateway.taps import Taps
from gateway.workers import Supervisor

__all__ = ["Running", "raise_fd_limit", "running_gateway", "serve"]


@dataclass
class Running:
    gateway: Gateway
    #: bound port of the first charger listener
    port: int
    admin_port: int
    #: bound port of every charger listener, by listener name (``listen[<i>]`` unless named)
    ports: dict[str, int] = field(default_factory=dict)

    def charger_url(self, host: str = "127.0.0.1", listener: str | None = None) -> str:
        """``ws://`` or ``wss://`` URL of a listener (the first by default), up to the path prefix."""
        cfg = self.gateway.config
        lst = next((x for x in cfg.all_listeners() if x.name == listener), cfg.listen) if listener else cfg.listen
        port = self.ports.get(lst.name, self.port)
        return f"{'wss' if lst.tls else 'ws'}://{host}:{port}{lst.path_prefix}"

    def admin_url(self, host: str = "127.0.0.1") -> str:
        return f"{'https' if self.gateway.config.admin.tls else 'http'}://{host}:{self.admin_port}"


def raise_fd_limit(want: int = 65536) -> tuple[int, int]:
    """Raise RLIMIT_NOFILE so that ``want`` sockets fit (each charger needs two: its own and its upstream link).

    The soft limit goes up to the hard one; a privileged process (root, CAP_SYS_RESOURCE) also raises the hard
    limit to ``want``. Returns (old soft, new soft); the caller logs the change.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want or soft == resource.RLIM_INFINITY:
        return soft, soft
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return soft, want
        except (ValueError, OSError):
            pass  # not privileged: the hard limit stays
    target = want if hard == resource.RLIM_INFINITY else min(hard, want)
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
async def running_gateway(config: Config, *, worker_socket: str | None = None) -> AsyncIterator[Running]:
    """``workers > 1``: this is the main process (no charger listener; admin API, worker processes, summed
    metrics: gateway.workers). ``worker_socket``: this is one of its workers (listeners with SO_REUSEPORT, admin
    app on that unix socket only). Otherwise one process does everything."""
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
    try:
        # TLS contexts are built here: an unreadable or mismatched file stops the start (ConfigError)
        gw = Gateway(config=config, metrics=metrics, store=store, writer=writer, router=Router(config))
        await start_security(config, gw, log)
    except BaseException:
        await store.close()
        raise
    writer.start()
    if config.taps:
        gw.taps = Taps(config.taps, store, metrics, log, node=gw.node)
        gw.taps.start()
    fleet = gw.fleet = Fleet(gw, config.store.owner_ttl_s)
    await fleet.start()  # ownership and node messages work before the first charger is admitted
    loop = asyncio.get_running_loop()
    sweeper = loop.create_task(gw.sweep(), name="sweeper")
    lag_probe = loop.create_task(probe_loop_lag(metrics), name="loop-lag")
    supervisor = Supervisor(config, metrics) if config.workers > 1 and worker_socket is None else None
    render = supervisor.render_metrics if supervisor is not None else None
    admin_runner = web.AppRunner(admin_app(gw, render), handle_signals=False, access_log=None)
    servers: list[asyncio.Server] = []
    admin_started = False
    try:
        ports: dict[str, int] = {}
        for lst in config.all_listeners() if supervisor is None else ():
            server = await loop.create_server(
                functools.partial(Handshake, gw, lst),
                lst.host,
                lst.port,
                backlog=4096,
                reuse_address=True,
                reuse_port=worker_socket is not None,
                ssl=gw.security.listener_tls.get(lst.name),
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S if lst.tls is not None else None,
            )
            servers.append(server)
            ports[lst.name] = int(server.sockets[0].getsockname()[1])
        if supervisor is not None:  # workers serve the charger port; ready before the admin API answers
            ports = {lst.name: lst.port for lst in supervisor.pin_ports().all_listeners()}
            await supervisor.start()
        await admin_runner.setup()
        admin_started = True
        admin_tls = config.admin.tls
        admin_ctx = (
            server_context(admin_tls.cert, admin_tls.key, min_version=admin_tls.min_version, ciphers=admin_tls.ciphers)
            if admin_tls is not None
            else None
        )
        site: web.BaseSite
        if worker_socket is not None:
            site = web.UnixSite(admin_runner, worker_socket)
        else:
            site = web.TCPSite(admin_runner, config.admin.host, config.admin.port, ssl_context=admin_ctx)
        await site.start()
        admin_port = 0 if worker_socket is not None else _bound_port(admin_runner)
        running = Running(gw, ports[config.listen.name], admin_port, ports)
        log.info(
            "gateway_started",
            node=gw.node,
            port=running.port,
            ports=ports,
            admin_port=running.admin_port,
            store=config.store.url.split("@")[-1],
            backends=sorted(config.backends),
        )
        yield running
    finally:
        gw.draining = True
        for server in servers:
            server.close()  # stop accepting; open connections stay until drained
        if supervisor is not None:
            s = config.session
            await supervisor.stop(s.shutdown_grace_s + s.drain_window_s + 15.0)
        await gw.drain(config.session.shutdown_grace_s, config.session.drain_window_s)
        await fleet.close()
        if gw.taps is not None:
            await gw.taps.close()
        sweeper.cancel()
        lag_probe.cancel()
        await asyncio.gather(sweeper, lag_probe, return_exceptions=True)
        if admin_started:
            await admin_runner.cleanup()
        await writer.close(timeout=5.0)
        await store.close()
        log.info("gateway_stopped", node=gw.node)


def _seconds_left(not_after: float) -> float:
    return not_after - time.time()


async def start_security(config: Config, gw: Gateway, log: Any) -> None:
    """Certificate expiry gauges, start-up warnings, and the credentials file imported into the store."""
    problems, expiry = check_files(config)
    for where, msg in problems.errors + problems.warnings:
        log.warning("certificate_problem", where=where, problem=msg)
    for name, not_after in expiry.items():
        gw.metrics.certificate_expiry.labels(name).set_function(functools.partial(_seconds_left, not_after))
    for name, b in config.backends.items():
        if not b.tls.verify:
            log.warning("backend_tls_verification_disabled", backend=name)
    path = config.security.credentials_file
    if path:
        try:
            n = await import_credentials(gw.store, path)
        except CredentialsFileError as e:
            raise ConfigError([("security.credentials_file", str(e))]) from None
        except StoreUnavailable as e:
            log.error("credentials_import_failed", reason=str(e))
        else:
            log.info("credentials_imported", chargers=n)


async def serve(config: Config, stop: asyncio.Event, config_path: str | None = None) -> None:
    """Run until ``stop`` is set (SIGTERM/SIGINT in the CLI), then drain and return. SIGHUP re-reads
    ``config_path`` and applies it (gateway/reload.py)."""
    from gateway.reload import reload_config

    old, new = raise_fd_limit()
    log = get_logger()
    if new > old:
        log.info("fd_limit_raised", soft_from=old, soft_to=new)
    async with running_gateway(config) as running:
        running.gateway.config_path = config_path
        # Everything allocated at start lives as long as the process: keep it out of every collection, and collect
        # the young generation less often (frames make short-lived dicts that reference counting frees anyway).
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)
        loop = asyncio.get_running_loop()
        hup = asyncio.Event()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, hup.set)
        while not stop.is_set():
            stopping = loop.create_task(stop.wait())
            reloading = loop.create_task(hup.wait())
            await asyncio.wait({stopping, reloading}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            reloading.cancel()
            if hup.is_set() and not stop.is_set():
                hup.clear()
                res = await reload_config(running.gateway, config_path)
                if not res.ok:
                    log.error("reload_rejected", problems=[f"{p}: {m}" for p, m in res.problems])
        log.info("shutdown_requested")
