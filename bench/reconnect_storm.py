"""Reconnect storm: N chargers connect at once to a running gateway; how long until all are admitted, at what cost.

    .venv/bin/python bench/reconnect_storm.py -n 2000 --profile 2 --cache --restart
    .venv/bin/python bench/reconnect_storm.py -n 500 --profile 0 --store memory
    .venv/bin/python bench/reconnect_storm.py -n 2000 --profile 2 --reconnect --tls-resume
    .venv/bin/python bench/reconnect_storm.py --summarize bench/results/storm-*.jsonl

What runs (loopback only, every process started and stopped here):
  * ``ocpp-gateway run`` (the venv's, uvloop when installed) with a generated config: one listener of security profile
    0, 1 (Basic auth over ws) or 2 (Basic auth over wss, trustme certificates), the Redis store (a redis-server on a
    free port, as bench/compare.py does) or the memory store, one backend, the chargers' credentials imported through
    ``security.credentials_file`` as ``hash:`` entries in ``ocpp-gateway hash-password``'s format (16 distinct
    passwords, hashed here once, shared round-robin: each charger still costs its own scrypt), and with ``--cache``
    ``security.verification_cache`` (the secret from the environment). ``--max-connects-per-s`` paces the backend.
  * a CSMS stand-in (``--role stub`` of this script: picows, the shared harness's ``csms_stub.answer`` for every CALL)
    that records the time of every upstream connect, so the connect rate the CSMS sees is measured;
  * ``--procs`` picows client processes for the fleet (ids CP000000..., niced by ``--client-nice``: they stand for
    chargers on other machines), and one more for ``--steady`` chargers under steady load (ids ST0000..., a Heartbeat
    every ``--steady-interval`` s each, one outstanding CALL, routed to a CSMS stand-in of their own so that their
    round trips measure the gateway rather than the CSMS that takes the storm), whose round trips before the storm
    (baseline, ``--baseline-s``) and during it are compared.

Phases: ``first``: the steady chargers connect, the baseline is measured, then the whole fleet connects at once
(each charger: TLS, the upgrade with its Basic auth header, a BootNotification; a refused or failed attempt is
retried after its Retry-After or a back-off of 0.5..4 s, until admitted or ``--timeout``). ``--restart``: then the
gateway gets SIGTERM (it drains and closes every charger with 1001), is started again, the steady chargers reconnect
and the whole fleet reconnects at once: the figure operators feel after a restart, a rolling update or a failover
(``restart``). ``--reconnect``: instead, the fleet's clients close and reconnect to the same gateway process
(``reconnect``: what a network blip or a CSMS outage longer than ``reconnect_grace_s`` looks like); with
``--tls-resume`` each client offers the TLS session of its previous connection (tickets: resumed by the same process
only, never by a restarted one: its ticket keys are new).

Per phase: ``all_admitted_s`` (release to the last charger admitted), admission latency per charger (first attempt to
admitted, retries included) p50/p99, attempts, errors by kind, the gateway's CPU in the window (seconds, % of one
core, ms per charger), the upstream connects the stand-in saw (count, peak per second, mean rate), the steady
chargers' round trip p50/p99 before and during the storm, the gateway's own counts (verification cache hits and
misses, outcomes), TLS sessions resumed. One JSON line per run on stdout, appended to ``--out`` (default
``bench/results/storm-<UTC>.jsonl``), and a short summary on stderr. Bounded: N <= 20,000, every phase <=
``--timeout`` s (<= 900), loopback addresses only; RLIMIT_NOFILE is raised as the gateway does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import json
import math
import multiprocessing as mp
import os
import random
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from array import array
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OCPPGW_SHARED_BENCH", ROOT.parent / "shared" / "bench"))
sys.path[:0] = [str(ROOT / "bench"), str(ROOT), str(SHARED)]

from compare import free_port, redis_server, wait_port  # noqa: E402  (bench/compare.py: the same helpers)

PY = sys.executable
GATEWAY = str(Path(PY).parent / "ocpp-gateway")
SECRET_ENV = "OCPPGW_BENCH_CACHE_SECRET"
N_PASSWORDS = 16
BOOT = b'{"chargePointVendor":"BenchCo","chargePointModel":"Storm-1"}'


# ------------------------------------------------------------------------------------------------ set-up helpers
def fleet_ids(n: int) -> list[str]:
    return [f"CP{i:06d}" for i in range(n)]


def steady_ids(n: int) -> list[str]:
    return [f"ST{i:04d}" for i in range(n)]


def password_of(cid: str) -> str:
    return f"storm-password-{int(cid[2:]) % N_PASSWORDS:02d}-0123456789"


def write_credentials(path: Path, ids: list[str]) -> None:
    """``hash:`` entries, as ``ocpp-gateway hash-password`` prints them (hashed once per distinct password)."""
    from gateway.security import hash_password

    pws = sorted({password_of(c) for c in ids})
    with mp.get_context("fork").Pool(2) as pool:
        hashes = dict(zip(pws, pool.map(hash_password, pws), strict=True))
    with path.open("w") as fh:
        for cid in ids:
            fh.write(f'{cid}: {{hash: "{hashes[password_of(cid)]}"}}\n')


def prefill_proofs(redis_url: str, credentials: Path, secret: str) -> int:
    """Write every charger's verification proof into Redis, as the gateway would after one successful check each
    (``--prefill``: a warm cache without paying a cold storm first)."""
    import redis
    import yaml

    from gateway.security import password_proof
    from gateway.store.keys import Keys

    entries = yaml.safe_load(credentials.read_text())
    keys = Keys()
    r = redis.Redis.from_url(redis_url)
    pipe = r.pipeline(transaction=False)
    for cid, e in entries.items():
        pipe.set(keys.credproof(cid), password_proof(secret.encode(), cid, e["hash"], password_of(cid)), px=86_400_000)
    pipe.execute()
    r.close()
    return len(entries)


def write_pki(work: Path, key: str) -> tuple[Path, Path, Path]:
    import trustme

    kt = trustme.KeyType.RSA if key == "rsa" else trustme.KeyType.ECDSA
    ca = trustme.CA(key_type=kt)
    leaf = ca.issue_cert("127.0.0.1", key_type=kt)
    cert, keyf, cafile = work / "gw-chain.pem", work / "gw.key", work / "ca.pem"
    cert.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    keyf.write_bytes(leaf.private_key_pem.bytes())
    cafile.write_bytes(ca.cert_pem.bytes())
    return cert, keyf, cafile


def gateway_config(
    args: argparse.Namespace, port: int, admin: int, store: str, stub: int, steady_stub: int, work: Path
) -> str:
    listen: dict[str, Any] = {"host": "127.0.0.1", "port": port, "security_profile": args.profile}
    if args.profile == 2:
        listen["tls"] = {"cert": str(work / "gw-chain.pem"), "key": str(work / "gw.key")}
        if args.max_tls_handshakes is not None:
            listen["max_tls_handshakes"] = args.max_tls_handshakes
    backend: dict[str, Any] = {"url": f"ws://127.0.0.1:{stub}/ocpp", "ocpp": "1.6"}
    if args.max_connects_per_s:
        backend["max_connects_per_s"] = args.max_connects_per_s
        backend["max_connect_wait_s"] = args.max_connect_wait_s
    security: dict[str, Any] = {"hash_concurrency": args.hash_concurrency}
    if args.profile in (1, 2):
        security["credentials_file"] = str(work / "credentials.yaml")
    if args.cache:
        security["verification_cache"] = {"secret": "${" + SECRET_ENV + "}"}
    cfg = {
        "listen": listen,
        "admin": {"host": "127.0.0.1", "port": admin},
        "store": {"url": store},
        "backends": {"bench": backend, "steady": {"url": f"ws://127.0.0.1:{steady_stub}/ocpp", "ocpp": "1.6"}},
        "routes": [{"match": "ST*", "primary": "steady"}, {"match": "*", "primary": "bench"}],
        "security": security,
        "logging": {"level": "info", "format": "json"},
        "session": {"shutdown_grace_s": 1},
    }
    if args.workers > 1:
        cfg["workers"] = args.workers
    path = work / "gateway.yaml"
    path.write_text(json.dumps(cfg, indent=1))
    return str(path)


class Gateway:
    """``ocpp-gateway run`` as a child process; started again by :meth:`restart`."""

    def __init__(self, config: str, port: int, admin: int, work: Path) -> None:
        self.argv = [GATEWAY, "run", "--config", config]
        self.port, self.admin, self.work = port, admin, work
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {**os.environ, SECRET_ENV: "bench-" + os.urandom(24).hex()}
        self.starts = 0

    def start(self, timeout: float = 120.0) -> float:
        """Start and wait until /readyz answers 200; returns the seconds it took."""
        t0 = time.monotonic()
        self.starts += 1
        log = open(self.work / f"gateway-{self.starts}.log", "ab")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"gateway exited with {self.proc.returncode}: see {log.name}")
            url = f"http://127.0.0.1:{self.admin}/readyz"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return time.monotonic() - t0
            time.sleep(0.05)
        raise SystemExit("gateway did not become ready")

    def stop(self, timeout: float = 60.0) -> float:
        """SIGTERM (the gateway drains: chargers closed with 1001) and wait; returns the seconds it took."""
        t0 = time.monotonic()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return time.monotonic() - t0

    def metrics(self) -> dict[str, float]:
        """``name{labels}`` -> value of the gateway's /metrics (the few families this bench reads)."""
        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/metrics", timeout=10) as r:
            text = r.read().decode()
        keep = ("ocppgw_auth_cache", "ocppgw_connections", "ocppgw_tls_handshakes", "ocppgw_backend_connect_wait",
                "ocppgw_auth_failures", "ocppgw_chargers_connected", "ocppgw_event_loop_lag")  # fmt: skip
        out: dict[str, float] = {}
        for fam in text_string_to_metric_families(text):
            if fam.name.startswith(keep):
                for s in fam.samples:
                    labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                    out[f"{s.name}{{{labels}}}"] = s.value
        return out


def cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) of these processes and their children."""
    import psutil

    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(pid)
            for q in (p, *p.children(recursive=True)):
                with contextlib.suppress(psutil.Error):
                    t = q.cpu_times()
                    total += t.user + t.system
    return total


def machine_busy_s() -> float:
    import psutil

    t = psutil.cpu_times()
    return t.user + t.system + t.nice + t.irq + t.softirq


# ------------------------------------------------------------------------------------------------ CSMS stand-in
def stub_main(port: int, dump: Path) -> None:
    """picows CSMS stand-in: answers every CALL (the shared harness's ``csms_stub.answer``), records the wall time of
    every upstream connect; SIGUSR1 writes them to ``dump`` (atomically)."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    from csms_stub import answer
    from picows import WSListener, WSMsgType, WSUpgradeResponse, WSUpgradeResponseWithListener, ws_create_server

    connects = array("d")

    class Stub(WSListener):
        def on_ws_connected(self, transport: Any) -> None:
            connects.append(time.time())

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type == WSMsgType.TEXT:
                transport.send(WSMsgType.TEXT, answer(frame.get_payload_as_bytes()))
            elif frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()

    def factory(req: Any) -> Any:
        proto = "ocpp1.6" if "ocpp1.6" in (req.headers.get("Sec-WebSocket-Protocol") or "") else None
        if proto is None:
            return WSUpgradeResponseWithListener(WSUpgradeResponse.create_error_response(400, b"ocpp1.6"), None)
        headers = {"Sec-WebSocket-Protocol": proto}
        return WSUpgradeResponseWithListener(WSUpgradeResponse.create_101_response(extra_headers=headers), Stub())

    def write_dump() -> None:
        tmp = dump.with_suffix(".tmp")
        tmp.write_text(json.dumps(list(connects)))
        tmp.replace(dump)

    async def main() -> None:
        server = await ws_create_server(factory, "127.0.0.1", port, backlog=4096)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, write_dump)
        await stop.wait()
        server.close()

    asyncio.run(main())


def stub_connects(proc: subprocess.Popen[bytes], dump: Path) -> list[float]:
    """The stand-in's connect times so far (it writes them on SIGUSR1)."""
    with contextlib.suppress(FileNotFoundError):
        dump.unlink()
    proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not dump.exists():
        if time.monotonic() > deadline:
            raise SystemExit("the CSMS stand-in did not write its connect times")
        time.sleep(0.02)
    return list(json.loads(dump.read_text()))


# ------------------------------------------------------------------------------------------------ chargers
#: the TLS session a connection attempt offers (set by the charger's task; read by the context's wrap_bio, which the
#: event loop calls in that task's context)
SESSION: contextvars.ContextVar[ssl.SSLSession | None] = contextvars.ContextVar("session", default=None)


class ResumingContext(ssl.SSLContext):
    """A client context that offers the calling task's :data:`SESSION` (asyncio/uvloop have no per-connection
    ``session`` argument; both create the connection's SSLObject with ``wrap_bio`` in the caller's context)."""

    def wrap_bio(self, incoming: Any, outgoing: Any, server_side: bool = False, server_hostname: Any = None,
                 session: Any = None) -> ssl.SSLObject:  # fmt: skip
        return super().wrap_bio(incoming, outgoing, server_side, server_hostname, session=session or SESSION.get())


def client_context(cafile: str | None) -> ResumingContext | None:
    if cafile is None:
        return None
    ctx = ResumingContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile)
    return ctx


class Chargers:
    """The chargers of one client process: connect all at once with retries, keep them connected, measure."""

    def __init__(self, args: argparse.Namespace, ids: list[str], cafile: str | None) -> None:
        self.args = args
        self.ids = ids
        self.ctx = client_context(cafile)
        scheme = "wss" if cafile else "ws"
        self.base = f"{scheme}://127.0.0.1:{args.port}/ocpp"
        self.transports: dict[str, Any] = {}
        self.sessions: dict[str, ssl.SSLSession] = {}
        self.errors: dict[str, int] = {}
        self.replies: dict[str, asyncio.Future[Any]] = {}
        self.samples = array("d")  # steady load: (wall time sent, round trip ms) pairs
        self.tasks: list[asyncio.Task[None]] = []

    def err(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def headers(self, cid: str) -> dict[str, str]:
        import base64

        h = {"Sec-WebSocket-Protocol": "ocpp1.6"}
        if self.args.profile in (1, 2):
            h["Authorization"] = "Basic " + base64.b64encode(f"{cid}:{password_of(cid)}".encode()).decode()
        return h

    def listener(self, cid: str) -> Any:
        from picows import WSListener, WSMsgType

        owner = self

        class Charger(WSListener):
            def on_ws_frame(self, transport: Any, frame: Any) -> None:
                if frame.msg_type == WSMsgType.TEXT:
                    fut = owner.replies.pop(cid, None)
                    if fut is not None and not fut.done():
                        fut.set_result(frame.get_payload_as_bytes())
                elif frame.msg_type == WSMsgType.CLOSE:
                    transport.send_close(frame.get_close_code())
                    transport.disconnect()

            def on_ws_disconnected(self, transport: Any) -> None:
                if owner.transports.get(cid) is transport:
                    del owner.transports[cid]
                fut = owner.replies.pop(cid, None)
                if fut is not None and not fut.done():
                    fut.set_exception(ConnectionError("disconnected"))

        return Charger()

    async def call(self, tr: Any, cid: str, uid: str, action: bytes, payload: bytes, timeout: float) -> bytes:
        from picows import WSMsgType

        fut = self.replies[cid] = asyncio.get_running_loop().create_future()
        tr.send(WSMsgType.TEXT, b'[2,"' + uid.encode() + b'","' + action + b'",' + payload + b"]")
        return await asyncio.wait_for(fut, timeout)

    async def boot(self, tr: Any, cid: str) -> bool | None:
        """After the upgrade: a BootNotification answered means admitted (returns whether the TLS session was
        resumed); None when the connection was lost (picows returns a transport already disconnected when the
        gateway closes before its 101, e.g. at its 10 s handshake deadline) or the boot got no answer."""
        if tr.is_disconnected:
            self.err("closed_before_101")
            return None
        sslobj = tr.underlying_transport.get_extra_info("ssl_object")
        try:
            await self.call(tr, cid, "boot", b"BootNotification", BOOT, 15)
        except (TimeoutError, ConnectionError):
            self.err("boot")
            tr.disconnect()
            return None
        if tr.is_disconnected:
            self.err("lost_after_boot")
            return None
        self.transports[cid] = tr
        if sslobj is not None and sslobj.session is not None:
            self.sessions[cid] = sslobj.session
        return bool(sslobj is not None and sslobj.session_reused)

    async def connect_one(self, cid: str, deadline: float) -> tuple[float, float, int, bool]:
        """(first attempt, admitted at (0: never), attempts, TLS session resumed), wall-clock times."""
        from picows import WSError, WSHandshakeError, ws_connect

        t0 = time.time()
        attempts, backoff = 0, 0.5
        while True:
            attempts += 1
            SESSION.set(self.sessions.get(cid) if self.args.tls_resume else None)
            delay = backoff * (0.5 + random.random())
            try:
                tr, _ = await ws_connect(
                    lambda: self.listener(cid), f"{self.base}/{cid}", ssl_context=self.ctx,
                    extra_headers=self.headers(cid), websocket_handshake_timeout=15, use_aiofastnet=False,
                )  # fmt: skip
            except WSHandshakeError as e:
                resp = e.response
                status = int(resp.status) if resp is not None else 0
                self.err(f"http_{status}")
                retry = resp.headers.get("Retry-After") if resp is not None else None
                if retry:
                    delay = float(retry) + 0.5 * random.random()
            except (OSError, TimeoutError, WSError, ssl.SSLError) as e:
                self.err(type(e).__name__)
            else:
                admitted = await self.boot(tr, cid)
                if admitted is not None:
                    return t0, time.time(), attempts, admitted
            backoff = min(backoff * 2, 4.0)
            if time.time() + delay > deadline:
                self.err("gave_up")
                return t0, 0.0, attempts, False
            await asyncio.sleep(delay)

    async def drop_all(self) -> None:
        from picows import WSCloseCode

        for tr in list(self.transports.values()):
            tr.send_close(WSCloseCode.OK)
            tr.disconnect()
        deadline = time.monotonic() + 30
        while self.transports and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def steady(self, cid: str) -> None:
        """One Heartbeat every ``steady_interval`` s while connected; each round trip is a sample."""
        k = 0
        interval = self.args.steady_interval
        while True:
            if cid not in self.transports:
                await asyncio.sleep(0.05)
                continue
            k += 1
            t_wall, t0 = time.time(), time.perf_counter()
            try:
                await self.call(self.transports[cid], cid, f"h{k}", b"Heartbeat", b"{}", 10)
            except (TimeoutError, ConnectionError, KeyError):
                self.err("steady_lost")
                continue
            rtt = time.perf_counter() - t0
            self.samples.extend((t_wall, rtt * 1000))
            await asyncio.sleep(max(0.0, interval - rtt) * (0.8 + 0.4 * random.random()))


def worker_main(args: argparse.Namespace, ids: list[str], cafile: str | None, conn: Any, nice: int) -> None:
    if nice:
        os.nice(nice)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def go() -> None:
        w = Chargers(args, ids, cafile)
        loop = asyncio.get_running_loop()
        conn.send(("ready", os.getpid()))
        while True:
            cmd, arg = await loop.run_in_executor(None, conn.recv)
            if cmd == "connect":
                todo = [c for c in w.ids if c not in w.transports]
                res = await asyncio.gather(*(w.connect_one(c, arg) for c in todo))
                conn.send(("connected", res, dict(w.errors)))
                w.errors.clear()
            elif cmd == "steady":
                w.tasks = [loop.create_task(w.steady(c)) for c in w.ids]
                conn.send(("steady", None))
            elif cmd == "samples":
                conn.send(("samples", w.samples.tobytes(), dict(w.errors)))
            elif cmd == "drop":
                await w.drop_all()
                conn.send(("dropped", len(w.transports)))
            elif cmd == "wait_closed":
                end = time.monotonic() + arg
                while w.transports and time.monotonic() < end:
                    await asyncio.sleep(0.05)
                conn.send(("closed", len(w.transports)))
            elif cmd == "exit":
                for t in w.tasks:
                    t.cancel()
                await w.drop_all()
                conn.send(("bye", None))
                return

    asyncio.run(go())


class Clients:
    """The client processes (forked, like ../shared/bench/load.py's): ``procs`` for the fleet, one for steady load."""

    def __init__(self, args: argparse.Namespace, cafile: str | None) -> None:
        ctx = mp.get_context("fork")
        fleet = fleet_ids(args.n)
        shards = [fleet[i :: args.procs] for i in range(args.procs)]
        self.fleet: list[Any] = []
        self.steady: Any = None
        self.pids: list[int] = []
        self.procs: list[Any] = []
        for ids, is_steady in [*((s, False) for s in shards), (steady_ids(args.steady), True)]:
            if not ids:
                continue
            a, b = ctx.Pipe()
            nice = 0 if is_steady else args.client_nice
            p = ctx.Process(target=worker_main, args=(args, ids, cafile, b, nice), daemon=True)
            p.start()
            self.procs.append(p)
            if is_steady:
                self.steady = a
            else:
                self.fleet.append(a)
        for c in self.all():
            self.pids.append(self.recv(c, "ready")[1])

    def all(self) -> list[Any]:
        return self.fleet + ([self.steady] if self.steady is not None else [])

    @staticmethod
    def recv(c: Any, expect: str, timeout: float = 1000) -> Any:
        if not c.poll(timeout):
            raise SystemExit(f"a client process did not answer {expect}")
        m = c.recv()
        assert m[0] == expect, m
        return m

    def ask(self, conns: list[Any], cmd: str, arg: Any, expect: str, timeout: float = 1000) -> list[Any]:
        for c in conns:
            c.send((cmd, arg))
        return [self.recv(c, expect, timeout) for c in conns]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ask(self.all(), "exit", None, "bye", 60)
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.kill()


# ------------------------------------------------------------------------------------------------ measuring
def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return round(v[min(len(v) - 1, max(0, math.ceil(p / 100 * len(v)) - 1))], 2)


def steady_rtts(samples: bytes, t0: float, t1: float) -> list[float]:
    a = array("d")
    a.frombytes(samples)
    return [a[i + 1] for i in range(0, len(a), 2) if t0 <= a[i] <= t1]


def rate_profile(times: list[float], t0: float, t1: float) -> dict[str, Any]:
    inside = sorted(t for t in times if t0 <= t <= t1)
    per_s: dict[int, int] = {}
    for t in inside:
        per_s[int(t - t0)] = per_s.get(int(t - t0), 0) + 1
    span = (inside[-1] - inside[0]) if len(inside) > 1 else 0.0
    return {"connects": len(inside), "peak_per_s": max(per_s.values(), default=0),
            "mean_per_s": round((len(inside) - 1) / span, 1) if span > 0 else None}  # fmt: skip


def loop_lag(after: dict[str, float], before: dict[str, float]) -> dict[str, Any]:
    """The gateway's event loop lag in the window (its own probe, a sample every 250 ms): samples, and the upper
    bounds of the buckets that hold the p99 and the worst sample."""
    prefix = "ocppgw_event_loop_lag_seconds_bucket{le="
    buckets = sorted(
        (float(k[len(prefix) : -1]), v - before.get(k, 0.0)) for k, v in after.items() if k.startswith(prefix)
    )
    n = buckets[-1][1] if buckets else 0
    if not n:
        return {"samples": 0}
    p99 = next(le for le, c in buckets if c >= 0.99 * n)
    worst = next(le for le, c in buckets if c >= n)
    return {"samples": int(n), "p99_le_ms": round(1000 * p99, 1), "max_le_ms": round(1000 * worst, 1)}


def delta(after: dict[str, float], before: dict[str, float], prefix: str) -> dict[str, float]:
    return {k[len(prefix) :]: round(v - before.get(k, 0.0), 3) for k, v in sorted(after.items()) if k.startswith(prefix)
            and v - before.get(k, 0.0)}  # fmt: skip


def storm(name: str, env: dict[str, Any], baseline: tuple[float, float]) -> dict[str, Any]:
    """Release the whole fleet at once and wait until every charger is admitted (or gave up at the deadline)."""
    args, gw, clients, stub = env["args"], env["gateway"], env["clients"], env["stub"]
    m0 = gw.metrics()
    pids_gw = [gw.proc.pid]
    c_gw, c_stub, c_clients, busy0 = cpu_s(pids_gw), cpu_s([stub.pid]), cpu_s(clients.pids), machine_busy_s()
    c_ours0 = cpu_s([os.getpid()])  # this process and every one it started (gateway, stub, redis, clients)
    t_release = time.time()
    deadline = t_release + args.timeout
    res = clients.ask(clients.fleet, "connect", deadline, "connected", args.timeout + 60)
    wall = time.time() - t_release
    rows = [r for m in res for r in m[1]]
    ok = [r for r in rows if r[1] > 0]
    t_all = max((r[1] for r in ok), default=time.time())
    c_gw1, c_stub1, c_clients1, busy1 = cpu_s(pids_gw), cpu_s([stub.pid]), cpu_s(clients.pids), machine_busy_s()
    c_ours1 = cpu_s([os.getpid()])
    m1 = gw.metrics()
    errors: dict[str, int] = {}
    for m in res:
        for k, v in m[2].items():
            errors[k] = errors.get(k, 0) + v
    out: dict[str, Any] = {
        "phase": name,
        "released_at": round(t_release, 3),
        "chargers": len(rows),
        "admitted": len(ok),
        "all_admitted_s": round(t_all - t_release, 3) if len(ok) == len(rows) else None,
        "admission_p50_ms": pct([1000 * (r[1] - r[0]) for r in ok], 50),
        "admission_p99_ms": pct([1000 * (r[1] - r[0]) for r in ok], 99),
        "admission_max_ms": pct([1000 * (r[1] - r[0]) for r in ok], 100),
        "attempts": sum(r[2] for r in rows),
        "errors": errors,
        "tls_resumed": sum(1 for r in ok if r[3]),
        "gateway_cpu_s": round(c_gw1 - c_gw, 3),
        "gateway_cpu_pct": round(100 * (c_gw1 - c_gw) / wall, 1),
        "gateway_cpu_ms_per_charger": round(1000 * (c_gw1 - c_gw) / max(1, len(ok)), 3),
        "stub_cpu_pct": round(100 * (c_stub1 - c_stub) / wall, 1),
        "clients_cpu_pct": round(100 * (c_clients1 - c_clients) / wall, 1),
        "other_pct": round(100 * ((busy1 - busy0) - (c_ours1 - c_ours0)) / wall, 1),
        "upstream": rate_profile(stub_connects(stub, env["dump"]), t_release, t_all + 0.5),
        "auth_cache": delta(m1, m0, "ocppgw_auth_cache_total"),
        "outcomes": delta(m1, m0, "ocppgw_connections_total"),
        "connect_wait_s": delta(m1, m0, "ocppgw_backend_connect_wait_seconds_sum"),
        "loop_lag": loop_lag(m1, m0),
    }
    if clients.steady is not None:
        samples = clients.ask([clients.steady], "samples", None, "samples")[0]
        base = steady_rtts(samples[1], *baseline)
        during = steady_rtts(samples[1], t_release, t_all)
        out["steady"] = {
            "baseline_n": len(base), "baseline_p50_ms": pct(base, 50), "baseline_p99_ms": pct(base, 99),
            "storm_n": len(during), "storm_p50_ms": pct(during, 50), "storm_p99_ms": pct(during, 99),
            "p99_ratio": round(pct(during, 99) / pct(base, 99), 2) if base and during else None,  # type: ignore[operator]
            "errors": samples[2],
        }  # fmt: skip
    return out


def summary(r: dict[str, Any]) -> str:
    lines = [f"# storm n={r['n']} profile={r['profile']} store={r['store']} cache={r['cache']} "
             f"pacing={r['max_connects_per_s'] or 'none'} resume={r['tls_resume']}"]  # fmt: skip
    for p in r["phases"]:
        s = p.get("steady") or {}
        lines.append(
            f"  {p['phase']:<9} admitted {p['admitted']}/{p['chargers']} in {p['all_admitted_s']} s; admission p50 "
            f"{p['admission_p50_ms']} ms p99 {p['admission_p99_ms']} ms; attempts {p['attempts']}; gateway CPU "
            f"{p['gateway_cpu_s']} s ({p['gateway_cpu_pct']} %, {p['gateway_cpu_ms_per_charger']} ms/charger); "
            f"CSMS saw {p['upstream']['connects']} connects, peak {p['upstream']['peak_per_s']}/s; cache "
            f"{p['auth_cache'] or '-'}; TLS resumed {p['tls_resumed']}; steady p99 {s.get('baseline_p99_ms')} -> "
            f"{s.get('storm_p99_ms')} ms ({s.get('p99_ratio')}x); gateway loop lag p99 <= "
            f"{p['loop_lag'].get('p99_le_ms')} ms; errors {p['errors'] or '-'}"
        )
    if r.get("restart_s") is not None:
        back = r.get("back_s", "never (not all admitted)")
        lines.append(f"  restart: SIGTERM -> ready {r['restart_s']} s; SIGTERM -> fleet back {back} s")
    return "\n".join(lines)


def _turns(r: dict[str, Any]) -> str:
    """The listener's max_tls_handshakes of a run: 'off' (0), the figure, or '-' (runs before the queue existed,
    or profile 0/1)."""
    v = r.get("max_tls_handshakes", "-")
    return "off" if v == 0 else ("default" if v is None and r["profile"] == 2 and "max_tls_handshakes" in r else str(v))


def _workers(r: dict[str, Any]) -> str:
    w = r.get("workers", 1)
    return f" ({w} workers)" if w > 1 else ""


def summarize(paths: list[str]) -> str:
    """A markdown table of the runs in these jsonl files (one row per phase)."""
    head = ("| N | profile | store | shared cache | pacing | TLS turns | resume | phase | all admitted s "
            "| admission p50 / p99 ms | gateway CPU s (ms/charger) | CSMS connects peak/s | cache hit/miss "
            "| TLS resumed | steady p99 ms (x baseline) | errors |")  # fmt: skip
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for path in paths:
        for line in Path(path).read_text().splitlines():
            r = json.loads(line)
            for p in r["phases"]:
                s = p.get("steady") or {}
                c = p["auth_cache"]
                rows.append(
                    f"| {r['n']}{_workers(r)} | {r['profile']} | {r['store']} | {'yes' if r['cache'] else 'no'} | "
                    f"{r['max_connects_per_s'] or '-'} | {_turns(r)} | {'yes' if r['tls_resume'] else 'no'} | "
                    f"{p['phase']} | "
                    f"{p['all_admitted_s']} | {p['admission_p50_ms']} / {p['admission_p99_ms']} | "
                    f"{p['gateway_cpu_s']} ({p['gateway_cpu_ms_per_charger']}) | {p['upstream']['peak_per_s']} | "
                    f"{int(c.get('{result=hit}', 0))}/{int(c.get('{result=miss}', 0))} | {p['tls_resumed']} | "
                    f"{s.get('baseline_p99_ms')} → {s.get('storm_p99_ms')} ({s.get('p99_ratio')}x) | "
                    f"{sum(p['errors'].values())} |"
                )
    return "\n".join(rows)


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=500, help="chargers of the fleet (<= 20000)")
    ap.add_argument("--profile", type=int, choices=(0, 1, 2), default=2)
    ap.add_argument("--store", choices=("redis", "memory"), default="redis")
    ap.add_argument("--cache", action="store_true", help="security.verification_cache (a secret) on")
    ap.add_argument("--restart", action="store_true", help="then restart the gateway; the fleet reconnects")
    ap.add_argument("--reconnect", action="store_true", help="then the fleet's clients close and reconnect")
    ap.add_argument("--tls-resume", action="store_true", help="clients offer their previous TLS session")
    ap.add_argument(
        "--prefill",
        action="store_true",
        help="with --cache: the cache holds every charger's proof "
        "before the first phase (as after an earlier connection), so the first phase is warm too",
    )
    ap.add_argument("--key", choices=("ecdsa", "rsa"), default="ecdsa", help="the gateway certificate's key")
    ap.add_argument("--procs", type=int, default=2, help="client processes for the fleet (<= 8)")
    ap.add_argument(
        "--client-nice",
        type=int,
        default=10,
        help="niceness of the fleet's client processes: they "
        "stand for chargers on other machines, so the gateway and the steady chargers go first",
    )
    ap.add_argument("--steady", type=int, default=20, help="chargers under steady load during the storm")
    ap.add_argument("--steady-interval", type=float, default=0.1, help="seconds between their Heartbeats")
    ap.add_argument("--baseline-s", type=float, default=3.0)
    ap.add_argument("--max-connects-per-s", type=float, default=0, help="backend pacing (0: none)")
    ap.add_argument(
        "--max-tls-handshakes",
        type=int,
        default=None,
        help="listen.max_tls_handshakes with --profile 2 (default: the gateway's; 0: every handshake at once)",
    )
    ap.add_argument("--max-connect-wait-s", type=float, default=5.0)
    ap.add_argument("--hash-concurrency", type=int, default=4)
    ap.add_argument(
        "--workers", type=int, default=1,
        help="gateway worker processes (config workers:, Redis store). Each charger takes two file descriptors in "
        "the process that holds it: past RLIMIT_NOFILE's hard limit / 2 chargers per process (10,000 at 20,000) "
        "one process cannot hold the fleet",
    )  # fmt: skip
    ap.add_argument("--timeout", type=float, default=300, help="bound of each phase, seconds (<= 900)")
    ap.add_argument("--quiet-wait", type=float, default=20, help="wait up to this long for a quiet machine first")
    ap.add_argument("--tag", default="")
    ap.add_argument("--workdir", default="", help="keep configs and logs in this directory (default: a temporary one)")
    ap.add_argument("--out", default="", help="jsonl file to append to (default bench/results/storm-<UTC>.jsonl)")
    ap.add_argument("--role", choices=("main", "stub"), default="main", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--dump", default="", help=argparse.SUPPRESS)
    ap.add_argument("--summarize", nargs="+", metavar="JSONL", help="print a markdown table of earlier runs")
    args = ap.parse_args()
    if args.summarize:
        print(summarize(args.summarize))
        return
    if args.role == "stub":
        stub_main(args.port, Path(args.dump))
        return
    if not (1 <= args.n <= 20000 and 1 <= args.procs <= 8 and 0 <= args.steady <= 200 and args.timeout <= 900):
        sys.exit("bounded runs only: 1 <= n <= 20000, 1 <= procs <= 8, steady <= 200, timeout <= 900 s")
    if args.restart and args.reconnect:
        sys.exit("--restart or --reconnect, not both")
    if args.tls_resume and args.profile != 2:
        sys.exit("--tls-resume needs --profile 2 (TLS)")

    from gateway.ops.lifecycle import raise_fd_limit

    raise_fd_limit(max(65536, 2 * (args.n + args.steady) + 4096))  # inherited by every child process
    import psutil

    bg = psutil.cpu_percent(interval=0.5) * psutil.cpu_count()
    t_q = time.monotonic()
    while args.quiet_wait > 0 and bg > 25 and time.monotonic() - t_q < args.quiet_wait:
        bg = psutil.cpu_percent(interval=0.5) * psutil.cpu_count()
    result: dict[str, Any] = {
        "bench": "reconnect_storm", "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "n": args.n,
        "profile": args.profile, "store": args.store, "cache": args.cache, "prefill": args.prefill,
        "tls_resume": args.tls_resume,
        "key": args.key if args.profile == 2 else None, "max_connects_per_s": args.max_connects_per_s or None,
        "max_tls_handshakes": args.max_tls_handshakes,
        "max_connect_wait_s": args.max_connect_wait_s, "procs": args.procs, "workers": args.workers,
        "client_nice": args.client_nice,
        "steady": args.steady,
        "hash_concurrency": args.hash_concurrency, "tag": args.tag, "python": sys.version.split()[0],
        "ncpu": os.cpu_count(), "bg_cpu_pct_before": round(bg, 1), "loadavg": os.getloadavg(),
    }  # fmt: skip
    with contextlib.ExitStack() as stack:
        if args.workdir:
            work = Path(args.workdir)
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ocppgw-storm-")))
        redis_url = "memory://"
        if args.store == "redis":
            redis_url = stack.enter_context(redis_server(work))
        cafile = None
        if args.profile == 2:
            cafile = str(write_pki(work, args.key)[2])
        if args.profile in (1, 2):
            t0 = time.monotonic()
            write_credentials(work / "credentials.yaml", fleet_ids(args.n) + steady_ids(args.steady))
            print(
                f"# credentials for {args.n + args.steady} chargers in {time.monotonic() - t0:.1f} s", file=sys.stderr
            )
        stub_port, steady_port, port, admin = free_port(), free_port(), free_port(), free_port()
        dump = work / "stub-connects.json"
        stub = subprocess.Popen([PY, __file__, "--role", "stub", "--port", str(stub_port), "--dump", str(dump)])
        stack.callback(lambda: (stub.terminate(), stub.wait(10)))
        # the steady chargers' CSMS: another stand-in, so that their round trips measure the gateway, not the CSMS
        # that takes the storm
        steady_stub = subprocess.Popen(
            [PY, __file__, "--role", "stub", "--port", str(steady_port), "--dump", str(work / "steady.json")]
        )
        stack.callback(lambda: (steady_stub.terminate(), steady_stub.wait(10)))
        wait_port(stub_port)
        wait_port(steady_port)
        cfg = gateway_config(args, port, admin, redis_url, stub_port, steady_port, work)
        gw = Gateway(cfg, port, admin, work)
        stack.callback(gw.stop)
        result["gateway_start_s"] = round(gw.start(), 2)
        if args.prefill and args.cache and args.store == "redis" and args.profile in (1, 2):
            prefill_proofs(redis_url, work / "credentials.yaml", gw.env[SECRET_ENV])
        args.port = port
        clients = Clients(args, cafile)
        stack.callback(clients.close)
        env = {"args": args, "gateway": gw, "clients": clients, "stub": stub, "dump": dump}
        steady = [clients.steady] if clients.steady is not None else []
        if steady:
            clients.ask(steady, "connect", time.time() + 60, "connected", 120)
            clients.ask(steady, "steady", None, "steady")
        t_b0 = time.time()
        time.sleep(args.baseline_s)
        baseline = (t_b0, time.time())
        print(f"# phase first: {args.n} chargers at once", file=sys.stderr)
        phases = [storm("first", env, baseline)]
        if args.restart:
            t_term = time.time()
            result["gateway_stop_s"] = round(gw.stop(), 2)
            result["gateway_start_again_s"] = round(gw.start(), 2)
            result["restart_s"] = round(time.time() - t_term, 2)
            clients.ask(clients.all(), "wait_closed", 30, "closed", 60)
            if steady:
                clients.ask(steady, "connect", time.time() + 60, "connected", 120)
            print(f"# phase restart: {args.n} chargers at once", file=sys.stderr)
            phases.append(storm("restart", env, baseline))
            last = phases[-1]
            if last["all_admitted_s"] is not None:  # SIGTERM to the last charger admitted again
                result["back_s"] = round(last["released_at"] + last["all_admitted_s"] - t_term, 2)
        elif args.reconnect:
            clients.ask(clients.fleet, "drop", None, "dropped", 120)
            print(f"# phase reconnect: {args.n} chargers at once", file=sys.stderr)
            phases.append(storm("reconnect", env, baseline))
        result["phases"] = phases
    line = json.dumps(result)
    print(line, flush=True)
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"storm-{result['ts'].replace(':', '')}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as fh:
        fh.write(line + "\n")
    print(summary(result), file=sys.stderr)
    print(f"# -> {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
