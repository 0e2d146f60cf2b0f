"""``workers: N``: N processes share the charger port; the main process supervises them and serves the admin API.

Layout (N > 1, Redis store required: processes share no memory)::

    main process   admin listener (/healthz /readyz /metrics /api/*), Supervisor, a Fleet node of its own
      ├─ worker 0  charger listener(s) bound with SO_REUSEPORT (the kernel spreads new connections), its own
      ├─ worker 1  Fleet node (ownership, takeover, forwarded admin CALLs), admin app on a private unix socket
      └─ ...

* Workers are started with the ``spawn`` method (a fresh interpreter: no loop, lock or socket inherited from the
  main process) and get the parsed :class:`Config` with every ``port: 0`` replaced by a port the main process
  reserved (a socket bound with SO_REUSEPORT and never listening, so it takes no connections).
* A worker that exits while the gateway is not stopping is started again (``ocppgw_worker_restarts_total{exit}``),
  after a back-off that grows while workers die young. Its chargers reconnect, land on the other workers and claim
  their ownership there; a dead worker's ownership keys simply expire.
* Admin CALLs for a charger reach its worker over the store's node channels, exactly as across replicas.
* ``/metrics`` of the main process is the sum over itself and every worker, scraped over their unix sockets when
  Prometheus scrapes (and every :data:`SCRAPE_INTERVAL_S`): counters and histograms are summed, gauges summed
  except ``ocppgw_store_up`` and ``ocppgw_certificate_expiry_seconds`` (minimum). Counters of a worker that died
  are kept (its last scrape is folded into a retired total), so totals never go backwards on a restart; what it
  counted after its last scrape is lost. Why not prometheus_client's multiprocess mode: it is process-global
  (an environment variable read at import, mmap files per pid to clean up, a mode per gauge) while each
  :class:`~gateway.metrics.Metrics` owns its registry so that tests run several gateways in one process; summing
  the workers' own text output keeps every collector as it is.
* SIGTERM/SIGINT to the main process: it stops restarting, sends SIGTERM to every worker (each drains its chargers
  over ``session.drain_window_s``), waits for them (bounded), then exits. Workers die with the main process
  (``PR_SET_PDEATHSIG``), so a SIGKILLed main process leaves no orphan serving chargers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import Config
from gateway.logging import configure_logging, get_logger
from gateway.metrics import Metrics
from gateway.ops.lifecycle import install_loop_policy, running_gateway, settle_heap

__all__ = ["SCRAPE_INTERVAL_S", "Supervisor", "aggregate_metrics", "worker_main"]

SCRAPE_INTERVAL_S = 5.0
#: a worker imports the credentials file at start (it compiled every OCPP schema too, before they were compiled on
#: first use): ~5-14 s here for 10,000 chargers on a busy node, where 30 s was not always enough (the whole gateway
#: then stopped); a bound for a node under load, not a figure to expect
WORKER_START_TIMEOUT_S = 120.0
_MIN_GAUGES = frozenset({"ocppgw_store_up", "ocppgw_certificate_expiry_seconds"})
_CUMULATIVE = frozenset({"counter", "histogram", "summary"})
_PR_SET_PDEATHSIG = 1

SampleKey = tuple[str, tuple[tuple[str, str], ...]]


# --------------------------------------------------------------------------------------------- metrics


class _Families:
    """Prometheus families summed sample by sample."""

    def __init__(self) -> None:
        self.meta: dict[str, tuple[str, str]] = {}  # family -> (type, help)
        self.values: dict[str, dict[SampleKey, float]] = {}

    def add(self, families: Iterable[Metric], cumulative_only: bool = False) -> None:
        for f in families:
            if cumulative_only and f.type not in _CUMULATIVE:
                continue
            self.meta.setdefault(f.name, (f.type, f.documentation))
            vals = self.values.setdefault(f.name, {})
            low = f.type == "gauge" and f.name in _MIN_GAUGES
            for s in f.samples:
                if s.name.endswith("_created"):
                    continue  # creation times do not add up
                key = (s.name, tuple(sorted(s.labels.items())))
                if key in vals:
                    vals[key] = min(vals[key], s.value) if low else vals[key] + s.value
                else:
                    vals[key] = s.value

    def collect(self) -> list[Metric]:
        out = []
        for name, (typ, doc) in self.meta.items():
            m = Metric(name, doc, typ)
            for (sname, labels), v in self.values.get(name, {}).items():
                m.add_sample(sname, dict(labels), v)
            out.append(m)
        return out


def aggregate_metrics(texts: Iterable[str], retired: _Families | None = None) -> bytes:
    """The text exposition of several processes' metrics, summed (see the module docstring)."""
    total = _Families()
    for text in texts:
        total.add(text_string_to_metric_families(text))
    if retired is not None:
        total.add(retired.collect())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Static(total.collect()))
    return generate_latest(registry)


class _Static:
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> list[Metric]:
        return self.metrics


# --------------------------------------------------------------------------------------------- worker side


def worker_main(config: Config, index: int, admin_socket: str, ready: Connection) -> None:
    """Entry point of a worker process (spawned): serve chargers until SIGTERM/SIGINT, then drain."""
    with contextlib.suppress(OSError, AttributeError):  # Linux: die with the main process
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    configure_logging(config.logging.level, config.logging.format)
    install_loop_policy()
    asyncio.run(_serve_worker(config, index, admin_socket, ready))


async def _serve_worker(config: Config, index: int, admin_socket: str, ready: Connection) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running_gateway(config, worker_socket=admin_socket) as running:
        get_logger().info("worker_started", worker=index, node=running.hub.node, pid=os.getpid())
        settle_heap()
        ready.send(running.hub.node)
        ready.close()
        await stop.wait()


# --------------------------------------------------------------------------------------------- main side


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _reserve_port(host: str) -> socket.socket:
    """A socket bound with SO_REUSEPORT on a free port, never listening: it pins the port for the workers."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((host, 0))
    return s


@dataclasses.dataclass
class _Worker:
    index: int
    proc: BaseProcess
    socket: str
    started: float
    node: str = ""
    last: str = ""  # its last /metrics text


class Supervisor:
    """Starts, watches and stops the worker processes of one main process."""

    def __init__(self, config: Config, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.n = config.workers
        self.log = get_logger(component="supervisor")
        self.dir = tempfile.mkdtemp(prefix="ocppgw-workers-")
        self.workers: dict[int, _Worker] = {}
        self.stopping = False
        self.restarts = 0
        self.retired = _Families()
        self._reserved: list[socket.socket] = []
        self._ctx = multiprocessing.get_context("spawn")
        self._respawns: set[asyncio.Task[None]] = set()
        self._scraper: asyncio.Task[None] | None = None
        self.worker_config = config

    def pin_ports(self) -> Config:
        """The config the workers get: every listener on port 0 gets a port reserved here."""
        cfg = self.config
        fixed = []
        for lst in cfg.all_listeners():
            if lst.port == 0:
                s = _reserve_port(lst.host)
                self._reserved.append(s)
                lst = dataclasses.replace(lst, port=int(s.getsockname()[1]))
            fixed.append(lst)
        self.worker_config = dataclasses.replace(
            cfg, listen=fixed[0], listeners=tuple(fixed) if cfg.listeners else (), workers=1
        )
        return self.worker_config

    async def start(self) -> None:
        """Start every worker; return when all are serving (or raise RuntimeError)."""
        await asyncio.gather(*(self._start(i) for i in range(self.n)))
        self.metrics.workers.set(len(self.workers))
        self._scraper = asyncio.get_running_loop().create_task(self._scrape_loop(), name="worker-scraper")

    async def _start(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        path = os.path.join(self.dir, f"worker-{index}.sock")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        reader, writer = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(
            target=worker_main, args=(self.worker_config, index, path, writer), name=f"ocppgw-worker-{index}"
        )
        proc.start()
        writer.close()
        w = self.workers[index] = _Worker(index, proc, path, time.monotonic())
        got: asyncio.Future[None] = loop.create_future()
        loop.add_reader(reader.fileno(), _resolve, got)
        try:
            async with asyncio.timeout(WORKER_START_TIMEOUT_S):
                await got
            w.node = str(reader.recv())
        except (TimeoutError, EOFError, OSError) as e:
            proc.kill()
            raise RuntimeError(f"worker {index} did not start (exit code {proc.exitcode})") from e
        finally:
            loop.remove_reader(reader.fileno())
            reader.close()
        sentinel = proc.sentinel
        loop.add_reader(sentinel, self._exited, w)
        self.log.info("worker_ready", worker=index, pid=proc.pid, node=w.node)

    def _exited(self, w: _Worker) -> None:
        """The worker's sentinel closed: it is exiting (reaped in a thread: the exit code may lag a moment)."""
        loop = asyncio.get_running_loop()
        loop.remove_reader(w.proc.sentinel)
        task = loop.create_task(self._reap(w))
        self._respawns.add(task)
        task.add_done_callback(self._respawns.discard)

    async def _reap(self, w: _Worker) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, w.proc.join, 5.0)
        code = w.proc.exitcode
        if self.workers.get(w.index) is w:
            del self.workers[w.index]
        self.metrics.workers.set(len(self.workers))
        if w.last:  # what it counted stays counted
            self.retired.add(text_string_to_metric_families(w.last), cumulative_only=True)
        if self.stopping:
            return
        why = f"signal_{-code}" if code is not None and code < 0 else f"code_{code}"
        self.restarts += 1
        self.metrics.worker_restarts.labels(why).inc()
        young = time.monotonic() - w.started < 5.0
        self.log.error("worker_died", worker=w.index, pid=w.proc.pid, exit=why, node=w.node)
        if young:
            await asyncio.sleep(1.0)  # dying young: do not spin
        while not self.stopping:
            try:
                await self._start(w.index)
            except RuntimeError as e:
                self.log.error("worker_restart_failed", worker=w.index, error=str(e))
                await asyncio.sleep(5.0)
                continue
            self.metrics.workers.set(len(self.workers))
            return

    async def stop(self, timeout: float) -> None:
        """SIGTERM every worker (each drains its chargers), wait up to ``timeout``, then SIGKILL what is left."""
        self.stopping = True
        for t in [*self._respawns, *([self._scraper] if self._scraper else [])]:
            t.cancel()
        await asyncio.gather(*self._respawns, *([self._scraper] if self._scraper else []), return_exceptions=True)
        loop = asyncio.get_running_loop()
        procs = [w.proc for w in self.workers.values()]
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid or 0, signal.SIGTERM)
        deadline = loop.time() + timeout
        for p in procs:
            left = max(0.0, deadline - loop.time())
            await loop.run_in_executor(None, p.join, left)
            if p.is_alive():
                self.log.error("worker_kill", pid=p.pid)
                p.kill()
                await loop.run_in_executor(None, p.join, 5.0)
        for w in list(self.workers.values()):
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(w.proc.sentinel)
        self.workers.clear()
        self.metrics.workers.set(0)
        for s in self._reserved:
            s.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    async def _scrape(self, w: _Worker) -> None:
        if not w.node or not w.proc.is_alive():
            return  # still starting, or dead (its exit is being handled)
        try:
            async with (
                aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=w.socket)) as http,
                http.get("http://worker/metrics", timeout=aiohttp.ClientTimeout(total=2)) as r,
            ):
                w.last = await r.text()
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            self.log.warning("worker_scrape_failed", worker=w.index, error=str(e))

    async def _scrape_loop(self) -> None:
        while True:
            await asyncio.sleep(SCRAPE_INTERVAL_S)
            await asyncio.gather(*(self._scrape(w) for w in list(self.workers.values())))

    async def render_metrics(self) -> bytes:
        """This process's metrics plus every worker's (fresh scrape) plus the retired totals of dead workers."""
        workers = list(self.workers.values())
        await asyncio.gather(*(self._scrape(w) for w in workers))
        texts = [self.metrics.render().decode()] + [w.last for w in workers if w.last]
        return aggregate_metrics(texts, self.retired)

    def nodes(self) -> dict[int, Any]:
        return {i: {"pid": w.proc.pid, "node": w.node} for i, w in self.workers.items()}
