"""Several gateway processes (workers, replicas) on one store: charger ownership and messages between nodes.

A *node* is one gateway process (``Hub.node``, ``host:pid:random``). A charger is owned by the node holding its
session; ownership is a store key with a TTL (``store.owner_ttl_s``):

* claimed at the handshake, before the upstream link opens (:meth:`Fleet.take`). When another node owned the
  charger, it gets a ``takeover`` message on its channel, closes its stale session with 1000 "replaced" and answers;
  the new session waits for that answer (bounded by :data:`TAKEOVER_TIMEOUT_S`, or not at all when nobody listens
  on that node's channel: the node is dead), so that the CSMS never sees two connections for one charger;
* refreshed every TTL/3 by one task for all the node's chargers (one pipeline). A charger that another node owns
  by then is closed here too (a takeover message that got lost);
* released on disconnect (write-behind, compare-and-delete). A node killed with SIGKILL releases nothing: its
  chargers drop out of the fleet list when their TTL runs out, and their next connection claims them anew.

Admin CALLs for a charger that another node holds are forwarded as a ``call`` message to its owner, which runs
:func:`call_local` and publishes the ``reply`` (request id, bounded wait). Messages are JSON on the store's
per-node channel (``<p>:node:<node>``; Redis pub/sub, at most once: every wait is bounded).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any, Protocol

import orjson

from gateway.app.calls import call_local, failure
from gateway.app.connection import Conn
from gateway.metrics import Metrics
from gateway.store import StateWriter, Store, StoreUnavailable, Subscription

__all__ = ["TAKEOVER_TIMEOUT_S", "Fleet", "FleetHost"]

#: how long a new session waits for the previous owner to close the charger's old one
TAKEOVER_TIMEOUT_S = 5.0
#: extra time a forwarded admin CALL may take on top of its own timeout (two pub/sub hops)
FORWARD_MARGIN_S = 2.0
#: message handlers running at once; more messages are dropped (counted)
MAX_HANDLERS = 1024


class FleetHost(Protocol):
    """What the fleet uses of its process (the hub)."""

    node: str
    store: Store
    writer: StateWriter
    metrics: Metrics
    log: Any
    conns: dict[str, Conn]

    async def close_session(self, cid: str, code: int, message: str, reason: str | None = None) -> None: ...


class Fleet:
    """Ownership and node messages of one gateway process. :meth:`start` and :meth:`close` own its tasks."""

    def __init__(self, gw: FleetHost, ttl_s: float) -> None:
        self.gw = gw
        self.node = gw.node
        self.ttl_s = ttl_s
        self.log = gw.log.bind(component="fleet", node=gw.node)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._sub: Subscription | None = None
        self._subscribed = asyncio.Event()

    async def start(self, timeout: float = 5.0) -> None:
        """Start listening and refreshing; waits (bounded) until this node's channel is subscribed."""
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._listen(), name="fleet-listen"),
            loop.create_task(self._refresh(), name="fleet-refresh"),
        ]
        try:
            async with asyncio.timeout(timeout):
                await self._subscribed.wait()
        except TimeoutError:
            self.log.error("fleet_channel_unavailable")  # keeps trying in the background

    async def close(self) -> None:
        for t in [*self._tasks, *self._handlers]:
            t.cancel()
        await asyncio.gather(*self._tasks, *self._handlers, return_exceptions=True)
        self._tasks = []
        for fut in self._pending.values():
            fut.cancel()
        if self._sub is not None:
            with contextlib.suppress(StoreUnavailable):
                await self._sub.close()
            self._sub = None

    # ----------------------------------------------------------------------------------------- ownership
    async def take(self, cid: str, log: Any) -> None:
        """Claim ``cid`` for this node; have its previous owner (another node) close the old session first."""
        gw = self.gw
        try:
            prev = await gw.store.claim_owner(cid, self.node, self.ttl_s)
        except StoreUnavailable as e:
            # Availability first: the charger is served; the refresh task claims it once the store is back.
            gw.writer.mark(False)
            log.warning("ownership_unavailable", error=str(e))
            return
        if prev is None or prev == self.node:
            return
        reply = await self.request(prev, {"t": "takeover", "cid": cid}, TAKEOVER_TIMEOUT_S)
        gw.metrics.fleet_events.labels("takeover_sent" if reply is not None else "takeover_unanswered").inc()
        log.info("charger_taken_over", previous_node=prev, acknowledged=reply is not None)

    async def _refresh(self) -> None:
        gw = self.gw
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            cids = list(gw.conns)
            try:
                lost = await gw.store.refresh_owners(self.node, cids, self.ttl_s)
            except StoreUnavailable as e:
                gw.writer.mark(False)
                self.log.warning("ownership_refresh_failed", error=str(e), chargers=len(cids))
                continue
            for cid in lost:
                conn = gw.conns.get(cid)
                if conn is None:
                    continue
                gw.metrics.fleet_events.labels("ownership_lost").inc()
                self.log.info("charger_owned_elsewhere", charger_id=cid)
                self._spawn(gw.close_session(cid, 1000, "replaced", "replaced"))

    # ----------------------------------------------------------------------------------------- admin calls
    async def call_remote(
        self, cid: str, action: str, payload: dict[str, Any], timeout: float
    ) -> tuple[int, dict[str, Any]]:
        """Forward an admin CALL to the node that owns ``cid``; (HTTP status, JSON body)."""
        m = self.gw.metrics
        try:
            owner = await self.gw.store.get_owner(cid)
        except StoreUnavailable:
            return 503, failure("StoreUnavailable", "store unreachable: cannot find the charger's node")
        if owner is None or owner == self.node:
            return 404, failure("NotConnected", "charger not connected")
        msg = {"t": "call", "cid": cid, "action": action, "payload": payload, "timeout_s": timeout}
        reply = await self.request(owner, msg, timeout + FORWARD_MARGIN_S)
        if reply is None:
            m.admin_calls.labels("forward_failed").inc()
            return 504, failure("NodeUnreachable", f"no answer from node {owner} in time")
        m.admin_calls.labels("forwarded").inc()
        status, body = reply.get("status"), reply.get("body")
        if not isinstance(status, int) or not isinstance(body, dict):
            return 502, failure("BadReply", f"malformed reply from node {owner}")
        return status, {**body, "node": owner}

    # ----------------------------------------------------------------------------------------- messages
    async def request(self, node: str, msg: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """Publish ``msg`` to ``node`` and wait for its reply; None when nobody listens or no reply in time."""
        rid = secrets.token_hex(8)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            try:
                sent = await self.gw.store.publish(node, orjson.dumps({**msg, "id": rid, "from": self.node}))
            except StoreUnavailable:
                return None
            if sent == 0:
                return None
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            return None
        finally:
            self._pending.pop(rid, None)

    async def _reply(self, node: str, rid: str, body: dict[str, Any]) -> None:
        try:
            await self.gw.store.publish(node, orjson.dumps({"t": "reply", "id": rid, **body}))
        except StoreUnavailable as e:
            self.log.warning("fleet_reply_failed", to=node, error=str(e))

    async def _listen(self) -> None:
        delay = 0.1
        while True:
            try:
                if self._sub is None:
                    self._sub = await self.gw.store.subscribe(self.node)
                    self._subscribed.set()
                    delay = 0.1
                raw = await self._sub.get(1.0)
            except StoreUnavailable as e:
                self.log.warning("fleet_channel_unavailable", error=str(e))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if raw is not None:
                self._dispatch(raw)

    def _dispatch(self, raw: bytes) -> None:
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            msg = None
        if not isinstance(msg, dict) or not isinstance(msg.get("id"), str):
            self.gw.metrics.fleet_events.labels("message_dropped").inc()
            return
        kind = msg.get("t")
        if kind == "reply":
            fut = self._pending.get(msg["id"])
            if fut is not None and not fut.done():
                fut.set_result(msg)
            return
        if not isinstance(msg.get("from"), str) or not isinstance(msg.get("cid"), str):
            self.gw.metrics.fleet_events.labels("message_dropped").inc()
            return
        if kind == "takeover":
            self._spawn(self._on_takeover(msg))
        elif kind == "call":
            self._spawn(self._on_call(msg))
        else:
            self.gw.metrics.fleet_events.labels("message_dropped").inc()

    def _spawn(self, coro: Any) -> None:
        if len(self._handlers) >= MAX_HANDLERS:
            coro.close()
            self.gw.metrics.fleet_events.labels("message_dropped").inc()
            return
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _on_takeover(self, msg: dict[str, Any]) -> None:
        gw, cid = self.gw, msg["cid"]
        conn = gw.conns.get(cid)
        if conn is not None:
            gw.metrics.chargers_replaced.inc()
            gw.metrics.fleet_events.labels("takeover_received").inc()
            self.log.info("charger_replaced", charger_id=cid, by=msg["from"])
            await gw.close_session(cid, 1000, "replaced", "replaced")
            await gw.writer.flush(1.0)  # our last records land before the new owner writes its own
        await self._reply(msg["from"], msg["id"], {"status": 200, "body": {"closed": conn is not None}})

    async def _on_call(self, msg: dict[str, Any]) -> None:
        action, payload, timeout = msg.get("action"), msg.get("payload"), msg.get("timeout_s")
        if not isinstance(action, str) or not isinstance(payload, dict) or not isinstance(timeout, int | float):
            status, body = 400, failure("BadRequest", "malformed forwarded call")
        else:
            gw = self.gw
            status, body = await call_local(gw.conns, gw.metrics, gw.log, msg["cid"], action, payload, float(timeout))
        await self._reply(msg["from"], msg["id"], {"status": status, "body": body})
