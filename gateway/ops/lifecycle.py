"""Start, run and stop a whole gateway process: store, hub, charger and admin listeners, worker processes.

:func:`running_gateway` is an async context manager used by the CLI, the demo and the tests alike (one code path):
it yields a :class:`Running` with the bound ports (port 0 in the config picks a free one). Everything it starts is
entered on one :class:`contextlib.AsyncExitStack`, so that leaving it stops each part in the reverse order, and only
the parts that started:

1. stop accepting (listening sockets closed; handshakes in progress get 503); worker processes stop;
2. the hub drains (:meth:`gateway.app.hub.Hub.running`): in-flight CALLs finish within ``session.shutdown_grace_s``,
   every charger is closed with 1001 and its upstream link and mirror feeds with it; taps, fleet and sweeper stop;
   the store's write-behind queue is flushed (bounded);
3. the admin listener stops (it answers ``/healthz`` and ``/readyz`` while the hub drains); the store closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import os
import resource
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from gateway.app.admission import Admission
from gateway.app.credentials import CredentialsFileError, import_credentials
from gateway.app.hub import Hub
from gateway.app.reload import reload_config
from gateway.config import Config, ConfigError, config_warnings
from gateway.edge.handshake import HANDSHAKE_TIMEOUT_S, Handshake
from gateway.edge.listener import GatedTlsServer, serve_tls
from gateway.logging import get_logger
from gateway.metrics import Metrics
from gateway.ocpp import schemas
from gateway.ops.admin import admin_app
from gateway.ops.certs import check_files
from gateway.ops.looplag import probe_loop_lag
from gateway.security import server_context
from gateway.store import StateWriter, StoreUnavailable, open_store
from gateway.tasks import stop_task

__all__ = ["Running", "WorkerPool", "install_loop_policy", "raise_fd_limit", "running_gateway", "serve"]


class WorkerPool(Protocol):
    """The worker processes of a main process (``workers > 1``: :class:`gateway.ops.workers.Supervisor`)."""

    def pin_ports(self) -> Config:
        """The config the workers get (listeners on port 0 get a port reserved here)."""
        ...

    async def start(self) -> None: ...

    async def stop(self, timeout: float) -> None: ...

    async def render_metrics(self) -> bytes:
        """/metrics of the main process: the sum of its workers'."""
        ...


def install_loop_policy() -> str:
    """uvloop when installed (a default dependency on Linux and macOS with CPython), else the default loop; the
    environment variable ``OCPPGW_EVENT_LOOP=asyncio`` keeps the stdlib loop even where uvloop is installed."""
    if os.environ.get("OCPPGW_EVENT_LOOP", "").strip().lower() == "asyncio":
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


@dataclass
class Running:
    hub: Hub
    #: bound port of the first charger listener
    port: int
    admin_port: int
    #: bound port of every charger listener, by listener name (``listen[<i>]`` unless named)
    ports: dict[str, int] = field(default_factory=dict)

    def charger_url(self, host: str = "127.0.0.1", listener: str | None = None) -> str:
        """``ws://`` or ``wss://`` URL of a listener (the first by default), up to the path prefix."""
        cfg = self.hub.config
        lst = next((x for x in cfg.all_listeners() if x.name == listener), cfg.listen) if listener else cfg.listen
        port = self.ports.get(lst.name, self.port)
        return f"{'wss' if lst.tls else 'ws'}://{host}:{port}{lst.path_prefix}"

    def admin_url(self, host: str = "127.0.0.1") -> str:
        return f"{'https' if self.hub.config.admin.tls else 'http'}://{host}:{self.admin_port}"


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


def validated_versions(config: Config) -> set[str]:
    """The OCPP versions whose schemas this deployment checks frames against, whose common actions are compiled at
    start (:func:`gateway.ocpp.schemas.warm`): every version of both sides when ``session.validate_schemas`` is on,
    or when a charger's version can differ from its backend's (a translated session validates what it reads);
    none for pass-through without validation, which compiles no schema at all."""
    offered: set[str] = {v for lst in config.all_listeners() for v in lst.ocpp_versions}
    spoken: set[str] = {b.ocpp for b in config.backends.values()}
    if config.session.validate_schemas or any(v != b for v in offered for b in spoken):
        return (offered | spoken) & set(schemas.SCHEMA_VERSIONS)
    return set()


@asynccontextmanager
async def running_gateway(
    config: Config,
    *,
    worker_socket: str | None = None,
    workers: Callable[[Config, Metrics], WorkerPool] | None = None,
) -> AsyncIterator[Running]:
    """``workers`` (given when ``config.workers > 1``, by the CLI): this is the main process (no charger listener;
    admin API, worker processes, summed metrics: gateway.ops.workers). ``worker_socket``: this is one of its workers
    (listeners with SO_REUSEPORT, admin app on that unix socket only). Otherwise one process does everything."""
    log = get_logger()
    # the schema files are there (a missing ``ocpp`` package fails here, not at the first frame); nothing is compiled:
    # the first frame of each (version, action, kind) compiles that one schema, once (gateway/ocpp/schemas.py)
    schemas.check_installed()
    if workers is None or worker_socket is not None:  # this process serves chargers (a supervisor does not)
        versions = sorted(validated_versions(config))
        started = time.process_time()
        n = schemas.warm(versions)
        if n:
            log.info("schemas_compiled", versions=versions, schemas=n, cpu_s=round(time.process_time() - started, 3))
    for where, msg in config_warnings(config):
        log.warning("config_warning", path=where, problem=msg)
    metrics = Metrics()
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as stack:
        store = open_store(config.store.url, config.store.prefix)
        stack.push_async_callback(store.close)
        writer = StateWriter(store, metrics, config.store.write_queue_max)
        try:
            await store.ping()
            metrics.store_up.set(1)
        except StoreUnavailable as e:
            # Not fatal: chargers can still be served; writes wait in the queue and /readyz says why.
            metrics.store_up.set(0)
            writer.up = False
            log.error("store_unavailable", error=str(e))
        hub = Hub(config, metrics, store, writer, log=log)  # TLS files are loaded here: a bad one is a ConfigError
        stack.callback(log.info, "gateway_stopped", node=hub.node)
        await start_security(config, hub, log)
        lag_probe = loop.create_task(probe_loop_lag(metrics), name="loop-lag")
        stack.push_async_callback(stop_task, lag_probe)
        supervisor = workers(config, metrics) if workers is not None and worker_socket is None else None
        render = supervisor.render_metrics if supervisor is not None else None
        admin_runner = web.AppRunner(admin_app(hub, render), handle_signals=False, access_log=None)
        await admin_runner.setup()
        stack.push_async_callback(admin_runner.cleanup)
        await stack.enter_async_context(hub.running())
        admission = Admission(hub)
        ports: dict[str, int] = {}
        servers: list[asyncio.Server | GatedTlsServer] = []
        for lst in config.all_listeners() if supervisor is None else ():
            factory = functools.partial(
                Handshake, admission, lst, metrics=metrics, ticker=hub.ticker, log=log, spawn=hub.spawn
            )
            tls_ctx = hub.security.listener_tls.get(lst.name)
            if tls_ctx is not None and lst.max_tls_handshakes > 0:
                gated = await serve_tls(
                    factory,
                    lst.host,
                    lst.port,
                    ctx=tls_ctx,
                    handshake_timeout=HANDSHAKE_TIMEOUT_S,
                    max_turns=lst.max_tls_handshakes,
                    reuse_port=worker_socket is not None,
                    on_failure=functools.partial(hub.security.tls_failed, lst.name),
                    on_change=functools.partial(
                        _handshake_queue,
                        metrics.tls_handshakes_waiting.labels(lst.name),
                        metrics.tls_handshake_turns.labels(lst.name),
                    ),
                )
                servers.append(gated)
                ports[lst.name] = int(gated.sockets[0].getsockname()[1])
                continue
            server = await loop.create_server(
                factory,
                lst.host,
                lst.port,
                backlog=4096,
                reuse_address=True,
                reuse_port=worker_socket is not None,
                ssl=hub.security.listener_tls.get(lst.name),
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S if lst.tls is not None else None,
            )
            servers.append(server)
            ports[lst.name] = int(server.sockets[0].getsockname()[1])
        if supervisor is not None:  # workers serve the charger port; ready before the admin API answers
            ports = {lst.name: lst.port for lst in supervisor.pin_ports().all_listeners()}
            await supervisor.start()
            s = config.session
            stack.push_async_callback(supervisor.stop, s.shutdown_grace_s + s.drain_window_s + 15.0)
        stack.callback(_stop_accepting, hub, servers)
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
        running = Running(hub, ports[config.listen.name], admin_port, ports)
        log.info(
            "gateway_started",
            node=hub.node,
            port=running.port,
            ports=ports,
            admin_port=running.admin_port,
            store=config.store.url.split("@")[-1],
            backends=sorted(config.backends),
        )
        yield running


def _stop_accepting(hub: Hub, servers: list[asyncio.Server | GatedTlsServer]) -> None:
    """The first step of a stop: no new charger (listening sockets closed; handshakes under way get 503)."""
    hub.draining = True
    for server in servers:
        server.close()  # open connections stay until drained


def _handshake_queue(waiting_gauge: Any, turns_gauge: Any, waiting: int, turns: int) -> None:
    waiting_gauge.set(waiting)
    turns_gauge.set(turns)


def _seconds_left(not_after: float) -> float:
    return not_after - time.time()


async def start_security(config: Config, hub: Hub, log: Any) -> None:
    """Certificate expiry gauges, start-up warnings, and the credentials file imported into the store."""
    problems, expiry = check_files(config)
    for where, msg in problems.errors + problems.warnings:
        log.warning("certificate_problem", where=where, problem=msg)
    for name, not_after in expiry.items():
        hub.metrics.certificate_expiry.labels(name).set_function(functools.partial(_seconds_left, not_after))
    for name, b in config.backends.items():
        if not b.tls.verify:
            log.warning("backend_tls_verification_disabled", backend=name)
    path = config.security.credentials_file
    if path:
        try:
            n = await import_credentials(hub.store, path)
        except CredentialsFileError as e:
            raise ConfigError([("security.credentials_file", str(e))]) from None
        except StoreUnavailable as e:
            log.error("credentials_import_failed", reason=str(e))
        else:
            log.info("credentials_imported", chargers=n)


def settle_heap() -> None:
    """Once a process serves (the single process, or each worker of ``workers: N``): everything allocated at start
    lives as long as the process, so keep it out of every collection, and collect the young generation less often
    (frames make short-lived dicts that reference counting frees anyway). Without it a worker's full collections walk
    the start-up heap while chargers wait. The compiled schemas are not part of it: each is compiled on first use,
    after this (gateway/ocpp/schemas.py), so the few a process uses are walked by collections like any other object."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


async def serve(
    config: Config,
    stop: asyncio.Event,
    config_path: str | None = None,
    workers: Callable[[Config, Metrics], WorkerPool] | None = None,
) -> None:
    """Run until ``stop`` is set (SIGTERM/SIGINT in the CLI), then drain and return. SIGHUP re-reads
    ``config_path`` and applies it (gateway/app/reload.py)."""
    old, new = raise_fd_limit()
    log = get_logger()
    if new > old:
        log.info("fd_limit_raised", soft_from=old, soft_to=new)
    async with running_gateway(config, workers=workers) as running:
        running.hub.config_path = config_path
        settle_heap()
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
                res = await reload_config(running.hub, config_path)
                if not res.ok:
                    log.error("reload_rejected", problems=[f"{p}: {m}" for p, m in res.problems])
        log.info("shutdown_requested")
