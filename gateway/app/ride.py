"""Riding through a CSMS outage (``routes[].offline.mode: ride_through``): one :class:`Ride` per connected charger.

A Ride sits between the charger's session and its primary link: it is the link's sink (frames, lost, restored) and
the session's ``to_backend``. It speaks the backend's version (the frames the session sends the CSMS: after
translation in a translated session), so pass-through and both translations go through the same code. States:

* ``live``: the link is up and the journal empty. Frames pass through; the answers of interest (boot, tokens) are
  learned (:func:`gateway.core.answerer.learned`); a 1.6 transactionId the gateway handed out is replaced by the
  CSMS's in later CALLs to the CSMS, and back in the CSMS's CALLs to the charger. A link lost goes the usual way
  (the session's CALLs wait up to ``reconnect_grace_s``); past it, ``riding`` instead of closing the charger.
* ``riding``: the link is down (at admission, or past the grace). Each charger CALL (one at a time: the session's
  up lane) is answered by :func:`gateway.core.answerer.answer` from the CSMS's earlier answers, and only *after* it
  was written to the charger's journal (an outbox stream of the store, ``<p>:{cid}:journal:<backend>``). The store
  down: not answered (logged once, counted), the charger's own offline behaviour takes over. Not answerable (a CALL
  only the CSMS can answer; the journal past its bounds for a new transaction): a CALLERROR ``InternalError`` of
  the gateway's own, not journalled. The link keeps reconnecting (no deadline).
* ``replaying``: the link is back. The journal is replayed in order, one CALL at a time, paced per backend for the
  process (``backends.<name>.replay_per_s``), each under the unique id it came with; an entry is removed only
  after the CSMS's CALLRESULT/CALLERROR (no answer in time: sent again, same id). New charger CALLs meanwhile are
  journalled behind the backlog and answered as while riding, so that none overtakes it; once the journal is
  empty, ``live``. A replayed StartTransaction's transactionId is written (awaited) before its entry is removed.
  An answer that differs from the gateway's is counted (``ocppgw_ride_through_divergences_total``), logged, kept
  per charger (admin API), and a token the CSMS refused for a transaction the gateway let start is enforced: a
  RemoteStopTransaction / RequestStopTransaction of the gateway's own (its answer never reaches the CSMS).

Across a SIGKILL: the journal and the id map are in the store (Redis); the entry on the wire when the process died
is sent again with the same unique id after the restart (the one window where the CSMS may see a CALL twice; same
id, so it can tell).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from gateway.app.ride_board import RideBoard
from gateway.core import answerer
from gateway.core.answerer import Answer
from gateway.core.limits import LimitWatch
from gateway.core.session import Session
from gateway.links.link import Link
from gateway.ocpp import schemas
from gateway.ocpp.errors import FrameError
from gateway.ocpp.frames import (
    Call,
    CallError,
    CallResult,
    Raw,
    call_error_text,
    call_result_text,
    call_text,
    parse_frame,
)
from gateway.offline import OfflineConfig
from gateway.store import StoreUnavailable, Write
from gateway.tasks import stop_task

if TYPE_CHECKING:
    from gateway.config import BackendConfig

__all__ = ["Ride", "RideState"]

#: CALLs whose live answers the gateway learns from
_LEARN = frozenset({"BootNotification", "Authorize", "StartTransaction", "StopTransaction", "TransactionEvent"})
#: the CALLs to the CSMS in which a 1.6 transactionId may need the CSMS's id, and those toward the charger
_MAP_UP = frozenset({"StopTransaction", "MeterValues"})
_MAP_DOWN = frozenset({"RemoteStopTransaction", "SetChargingProfile"})
_BATCH = 50
#: how long a journal write is tried again while the store fails (bounded by half the CALL timeout)
_JOURNAL_WAIT_S = 5.0
#: the journal is never trimmed by the outbox (its own bounds refuse new transactions first)
_NO_TRIM = 1_000_000_000


class RideState(StrEnum):
    LIVE = "live"
    RIDING = "riding"
    REPLAYING = "replaying"


class Ride:
    """The ride-through of one charger toward its primary (see the module docstring)."""

    def __init__(
        self,
        board: RideBoard,
        *,
        charger_id: str,
        session: Session,
        link: Link,
        policy: OfflineConfig,
        stored: dict[str, dict[str, Any]],
        depth: int,
        oldest_at: float | None,
        call_timeout_s: float,
        spawn: Any,
        log: Any,
    ) -> None:
        self.board = board
        self.charger_id = charger_id
        self.session = session
        self.link = link
        self.backend_config: BackendConfig = link.backend
        self.backend = link.backend.name
        self.version = session.backend_version
        self.policy = policy
        self.call_timeout_s = call_timeout_s
        self.spawn = spawn
        self.log = log
        self.stream = board.keys.journal(charger_id, self.backend)
        self.state = RideState.LIVE
        #: entries in the journal (known here: this process owns the charger) and the time of the oldest
        self.depth = depth
        self.oldest_at = oldest_at
        prefix = f"{self.backend}|"
        boot = stored.get(prefix + "boot") or {}
        interval = boot.get("interval")
        self.boot_interval: int | None = interval if isinstance(interval, int) else None
        #: gateway transactionId -> the CSMS's, and back (1.6, in the backend's version)
        self.to_csms: dict[int, int] = {}
        self.to_charger: dict[int, int] = {}
        for field, doc in stored.items():
            if field.startswith(prefix + "tx:"):
                try:
                    gw, csms = int(field[len(prefix) + 3 :]), doc.get("csms")
                except ValueError:
                    continue
                if isinstance(csms, int):
                    self.to_csms[gw], self.to_charger[csms] = csms, gw
        #: the last live CALL sent to the CSMS whose answer is learned: (unique id, action, payload)
        self._live: tuple[str, str, dict[str, Any]] | None = None
        #: a charger CALL being written to the journal (the session's up lane waits for its answer)
        self._writing = False
        self._written = asyncio.Event()
        self._replay: asyncio.Task[None] | None = None
        self._waiting: tuple[str, asyncio.Future[CallResult | CallError]] | None = None
        #: unique ids of the gateway's own CALLs to the charger (stops): their answers go nowhere
        self._own: set[str] = set()
        self._own_n = 0
        self._tag = secrets.token_hex(3)
        #: transactions started under accept_limited, until they end or reach a limit
        self._limits = LimitWatch(policy)
        self.divergences = 0
        self.last_divergence: dict[str, Any] | None = None
        self.replayed = 0
        self._down_logged = False
        #: (unique id, action) of the last journal entry the CSMS answered in this process's replay
        self._delivered: tuple[Any, Any] | None = None
        session.fx.to_backend = self.to_backend
        session.resend_lost = True
        link.attach(self)
        link.on_give_up = self.ride
        board.attach(self)

    # ------------------------------------------------------------------ looking

    @property
    def answering(self) -> bool:
        """The gateway answers this charger's CALLs now (riding or replaying)."""
        return self.state is not RideState.LIVE

    def journal_age(self) -> float | None:
        return None if self.oldest_at is None or self.depth == 0 else max(0.0, time.time() - self.oldest_at)

    def view(self) -> dict[str, Any]:
        age = self.journal_age()
        return {
            "charger_id": self.charger_id,
            "backend": self.backend,
            "state": self.state.value,
            "link_up": self.link.transport is not None,
            "journal_depth": self.depth,
            "journal_age_s": round(age, 3) if age is not None else None,
            "replayed": self.replayed,
            "divergences": self.divergences,
            "last_divergence": self.last_divergence,
        }

    # ------------------------------------------------------------------ state changes

    def ride(self) -> None:
        """The primary is unreachable (at admission, or past its reconnect grace): the gateway answers from now on."""
        if self.state is RideState.RIDING:
            return
        was = self.state
        self.state = RideState.RIDING
        self.board.attach(self)
        self.log.warning("ride_through_started", was=was.value, journal_depth=self.depth)
        if was is RideState.LIVE and not self.session.link_up:
            self.session.link_restored()  # the CALLs that waited through the grace go to the journal now
        self.link.keep_trying()

    def replay_now(self) -> bool:
        """Start the replay when the link is up (True), or make the link try again at once."""
        if self.link.transport is None:
            self.link.keep_trying()
            return False
        if self.state is RideState.LIVE and self.depth == 0:
            return True
        self.state = RideState.REPLAYING
        if self._replay is None or self._replay.done():
            self._replay = asyncio.get_running_loop().create_task(self._replay_guarded(), name="ride-replay")
        return True

    async def drop(self) -> int:
        """Remove every journal entry unreplayed (admin API); returns how many. Raises StoreUnavailable."""
        await stop_task(self._replay)
        outbox, n = self.board.store.outbox(), 0
        while True:
            entries = await outbox.read(self.stream, 500)
            if not entries:
                break
            await outbox.ack(self.stream, [e.id for e in entries])
            n += len(entries)
        self.depth, self.oldest_at = 0, None
        self.board.metrics.ride_messages.labels(self.backend, "dropped").inc(n)
        self.log.warning("ride_through_journal_dropped", entries=n)
        if self.link.transport is not None:
            self._go_live()
        return n

    async def close(self) -> None:
        await stop_task(self._replay)
        self.board.detach(self)

    def _go_live(self) -> None:
        if self.state is RideState.LIVE:
            return
        self.state = RideState.LIVE
        self.link.persistent = False
        self.log.info("ride_through_ended", replayed=self.replayed, divergences=self.divergences)

    # ------------------------------------------------------------------ the link's sink

    def from_backend(self, text: bytes) -> None:
        waiting = self._waiting
        if waiting is not None or self._live is not None or self.to_charger:
            try:
                frame = parse_frame(text)
            except FrameError:
                self.session.from_backend(text)
                return
            if type(frame) is CallResult or type(frame) is CallError:
                if waiting is not None and frame.unique_id == waiting[0]:
                    if not waiting[1].done():
                        waiting[1].set_result(frame)
                    return
                live = self._live
                if live is not None and frame.unique_id == live[0]:
                    self._live = None
                    if type(frame) is CallResult:
                        self._learn(live[1], live[2], frame.payload)
                    if live[1] == "StopTransaction":  # answered: the transaction's id map is no longer needed
                        self._forget_tx(live[2].get("transactionId"))
            elif type(frame) is Call and self.to_charger and frame.action in _MAP_DOWN:
                mapped = answerer.map_transaction_ids(frame.action, frame.payload, self.to_charger, False)
                if mapped is not None:
                    text = call_text(frame.unique_id, frame.action, mapped)
        self.session.from_backend(text)

    def link_lost(self) -> None:
        if self.state is RideState.LIVE:
            self._live = None
            self.session.link_lost()
            return
        if self.state is RideState.REPLAYING:
            self.state = RideState.RIDING
            waiting = self._waiting
            if waiting is not None and not waiting[1].done():
                waiting[1].set_exception(ConnectionError("backend link lost"))

    def link_restored(self) -> None:
        if self.state is RideState.LIVE:
            self.session.link_restored()
            return
        self.log.info("ride_through_replay_started", journal_depth=self.depth)
        self.replay_now()

    # ------------------------------------------------------------------ the session's to_backend

    def to_backend(self, data: Raw) -> None:
        if self.state is RideState.LIVE and not self._own:
            self._live_out(data)
            return
        try:
            frame = parse_frame(data)
        except FrameError:
            return  # the session sends nothing malformed; nothing to do
        if type(frame) is CallResult or type(frame) is CallError:
            if frame.unique_id in self._own:
                self._own.discard(frame.unique_id)
                return
            if self.state is RideState.LIVE:
                self._live_out(data)
            elif self.link.transport is not None:
                self.link.send(data)  # the charger answers a CALL the CSMS sent during the replay
            else:
                self.session.metrics.dropped_results.labels("from_charger", "link_down").inc()
            return
        if type(frame) is not Call:
            return
        if self.state is RideState.LIVE:
            self._live_out(data, frame)
        else:
            self._answer(frame)

    def _live_out(self, data: Raw, frame: Call | None = None) -> None:
        if frame is None and not (self.to_csms or _maybe_learned(data)):
            self.link.send(data)
            return
        if frame is None:
            try:
                parsed = parse_frame(data)
            except FrameError:
                self.link.send(data)
                return
            if type(parsed) is not Call:
                self.link.send(data)
                return
            frame = parsed
        action = frame.action
        if action in _LEARN:
            self._live = (frame.unique_id, action, frame.payload)
        if self.to_csms and action in _MAP_UP:
            mapped = answerer.map_transaction_ids(action, frame.payload, self.to_csms, True)
            if mapped is not None:
                data = call_text(frame.unique_id, action, mapped)
        self.link.send(data)

    # ------------------------------------------------------------------ answering while riding

    def _answer(self, call: Call) -> None:
        m = self.board.metrics.ride_messages
        now = time.time()
        ans = answerer.answer(
            self.version, call.action, call.payload, cache=self.board.cache(self.backend),
            boot_interval=self.boot_interval, now=now, policy=self.policy,
        )  # fmt: skip
        if ans is not None and not _valid(self.version, call.action, ans):
            ans = None
        if ans is None:
            m.labels(self.backend, "refused").inc()
            self._refuse(call, "the CSMS is unreachable and the gateway cannot answer this on its behalf")
            return
        if not ans.journal:
            m.labels(self.backend, "answered").inc()
            self.session.from_backend(call_result_text(call.unique_id, ans.payload))
            return
        age = self.journal_age()
        over = self.depth >= self.policy.journal_max_len or (age is not None and age > self.policy.journal_max_age_s)
        if (over and ans.starts) or self.depth >= 2 * self.policy.journal_max_len:
            m.labels(self.backend, "journal_full").inc()
            self.log.warning("ride_through_journal_full", action=call.action, journal_depth=self.depth)
            self._refuse(call, "the CSMS is unreachable and the gateway's journal for this charger is full")
            return
        entry = {"u": call.unique_id, "a": call.action, "p": call.payload, "r": ans.payload, "t": now}
        self._writing = True
        self._written.clear()
        self.spawn(self._journal_guarded(call, ans, entry), f"ride-journal:{self.charger_id}")

    async def _journal_guarded(self, call: Call, ans: Answer, entry: dict[str, Any]) -> None:
        try:
            await self._journal(call, ans, entry)
        except Exception:  # a bug: logged and counted; the CALL is not answered (the charger times out)
            self.log.exception("ride_through_journal_crashed", action=call.action)
            self.board.metrics.internal_errors.labels("ride_journal").inc()

    async def _journal(self, call: Call, ans: Answer, entry: dict[str, Any]) -> None:
        m = self.board.metrics.ride_messages
        try:
            written = await self._append(entry)
        finally:
            self._writing = False
            self._written.set()
        if not written:
            m.labels(self.backend, "store_unavailable").inc()
            return  # not answered: the charger's CALL times out, and its own offline behaviour takes over
        self.board.store_down_logged = False
        if self.depth == 0:
            self.oldest_at = entry["t"]
        self.depth += 1
        m.labels(self.backend, "journalled").inc()
        for tx in self._limits.seen(call.action, call.payload, ans, time.time()):
            self._stop(tx, "limit")
        self.session.from_backend(call_result_text(call.unique_id, ans.payload))

    async def _append(self, entry: dict[str, Any]) -> bool:
        """Write one entry to the journal. A store that fails is tried again for up to half the session's CALL
        timeout (at most 5 s): a Redis restart or failover takes a second or two, and the charger waits for its
        answer meanwhile. False when it never succeeded (logged once while the store stays down).

        A write whose reply was lost (the entry written, the connection dropped) is written again: the replay
        sends two consecutive entries with the same unique id once (:meth:`_run_replay`)."""
        outbox = self.board.store.outbox()
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + min(_JOURNAL_WAIT_S, self.call_timeout_s / 2), 0.05
        while True:
            try:
                await outbox.append(self.stream, [entry], _NO_TRIM, 0)
                return True
            except StoreUnavailable as e:
                if loop.time() + delay > deadline:
                    if not self.board.store_down_logged:
                        self.board.store_down_logged = True
                        self.log.error("ride_through_journal_unwritable", reason=str(e)[:200])
                    return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _refuse(self, call: Call, why: str) -> None:
        self.session.from_backend(call_error_text(call.unique_id, "InternalError", why))

    # ------------------------------------------------------------------ unknown tokens accepted with a limit

    def _stop(self, tx: int | str, reason: str) -> None:
        """Ask the charger to stop transaction ``tx`` (its own id), as if the CSMS asked: the session delivers it
        (translated when the charger speaks another version); the charger's answer goes nowhere."""
        self._own_n += 1
        uid = f"r{self._own_n}.{self._tag}"
        if self.version == "1.6":
            action, payload = "RemoteStopTransaction", {"transactionId": tx}
        else:
            action, payload = "RequestStopTransaction", {"transactionId": tx}
        self._own.add(uid)
        self.board.metrics.ride_stops.labels(self.backend, reason).inc()
        self.log.warning("ride_through_stop_sent", reason=reason, transaction_id=tx, action=action)
        self.session.from_backend(call_text(uid, action, payload))

    # ------------------------------------------------------------------ learning

    def _learn(self, action: str, call: dict[str, Any], result: dict[str, Any]) -> None:
        got = answerer.learned(self.version, action, call, result)
        now = time.time()
        for token, info in got.tokens:
            self.board.learn(self.backend, token, info, now, self.policy.auth_cache_max_entries)
        if got.boot_interval is not None and got.boot_interval != self.boot_interval:
            self.boot_interval = got.boot_interval
            self.board.writer.put(
                Write("ride", self.charger_id, f"{self.backend}|boot", {"interval": got.boot_interval})
            )

    def _forget_tx(self, gw: Any) -> None:
        if isinstance(gw, int) and gw in self.to_csms:
            csms = self.to_csms.pop(gw)
            self.to_charger.pop(csms, None)
            self.board.writer.put(Write("ride", self.charger_id, f"{self.backend}|tx:{gw}", None))

    # ------------------------------------------------------------------ the replay

    async def _replay_guarded(self) -> None:
        """The replay; a bug in it is logged and counted, and it starts again after a back-off (the journal is
        intact: an entry is removed only once the CSMS answered it)."""
        while self.state is RideState.REPLAYING:
            try:
                await self._run_replay()
                return
            except Exception:
                self.log.exception("ride_through_replay_crashed")
                self.board.metrics.internal_errors.labels("ride_replay").inc()
                await asyncio.sleep(5.0)

    async def _run_replay(self) -> None:
        outbox = self.board.store.outbox()
        delay = 0.2
        while self.state is RideState.REPLAYING:
            try:
                entries = await outbox.read(self.stream, _BATCH)
            except StoreUnavailable as e:
                if not self._down_logged:
                    self._down_logged = True
                    self.log.error("ride_through_journal_unreadable", reason=str(e)[:200])
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._down_logged, delay = False, 0.2
            if not entries:
                if self._writing:
                    await self._written.wait()
                    continue
                self.depth, self.oldest_at = 0, None
                self._go_live()
                return
            for i, ent in enumerate(entries):
                if self.state is not RideState.REPLAYING:
                    return
                data = ent.data
                if isinstance(data, dict):
                    key = (data.get("u"), data.get("a"))
                    if key == self._delivered:  # the CSMS answered it already: its ack failed, or a repeated write
                        self.board.metrics.ride_messages.labels(self.backend, "repeat_skipped").inc()
                    elif await self._replay_one(data):
                        self._delivered = key
                    else:
                        break  # not delivered: read again from this entry
                try:
                    await asyncio.shield(outbox.ack(self.stream, [ent.id]))
                except StoreUnavailable:
                    break  # read again: the entry comes first, and is acknowledged without being sent again
                self.depth = max(0, self.depth - 1)
                nxt = entries[i + 1].data if i + 1 < len(entries) else None
                self.oldest_at = float(nxt.get("t", time.time())) if isinstance(nxt, dict) else self.oldest_at
                self.replayed += 1

    async def _replay_one(self, entry: dict[str, Any]) -> bool:
        """Send one journal entry and handle the CSMS's answer; False when it was not answered (sent again)."""
        uid, action, payload, answered = entry.get("u"), entry.get("a"), entry.get("p"), entry.get("r")
        if not (isinstance(uid, str) and isinstance(action, str) and isinstance(payload, dict)):
            return True  # not an entry this gateway wrote: skipped
        answered = answered if isinstance(answered, dict) else {}
        await self.board.pace(self.backend, self.backend_config.replay_per_s)
        if self.link.transport is None or self.state is not RideState.REPLAYING:
            return False
        sent = payload
        if self.to_csms and action in _MAP_UP:
            sent = answerer.map_transaction_ids(action, payload, self.to_csms, True) or payload
        fut: asyncio.Future[CallResult | CallError] = asyncio.get_running_loop().create_future()
        self._waiting = (uid, fut)
        m = self.board.metrics
        try:
            self.link.send(call_text(uid, action, sent))
            async with asyncio.timeout(self.call_timeout_s):
                frame = await fut
        except (TimeoutError, ConnectionError):
            m.ride_messages.labels(self.backend, "replay_retried").inc()
            return False
        finally:
            self._waiting = None
        result = frame.payload if type(frame) is CallResult else None
        if result is not None:
            self._learn(action, payload, result)
            if action == "StartTransaction" and self.version == "1.6":
                await self._map_start(answered, result)
            if action == "StopTransaction":
                self._forget_tx(payload.get("transactionId"))
        m.ride_messages.labels(self.backend, "replayed").inc()
        kind = answerer.divergence(self.version, action, answered, result)
        if kind is not None:
            self.divergences += 1
            self.last_divergence = {"action": action, "kind": kind, "unique_id": uid, "gateway": answered,
                                    "csms": result if result is not None else {"errorCode": _code(frame)}}  # fmt: skip
            m.ride_divergences.labels(self.backend, kind).inc()
            self.log.warning("ride_through_divergence", action=action, kind=kind, unique_id=uid)
            stop = answerer.enforcement(self.version, action, payload, answered, result) if result else None
            if stop is not None:
                self._stop(stop[1]["transactionId"], "divergence")
        return True

    async def _map_start(self, answered: dict[str, Any], result: dict[str, Any]) -> None:
        gw, csms = answered.get("transactionId"), result.get("transactionId")
        if not isinstance(gw, int) or not isinstance(csms, int):
            return
        self.to_csms[gw], self.to_charger[csms] = csms, gw
        write = Write("ride", self.charger_id, f"{self.backend}|tx:{gw}", {"csms": csms})
        while True:  # before the entry is acknowledged: a restart must still map the transaction's later CALLs
            try:
                await asyncio.shield(self.board.store.apply([write]))
                return
            except StoreUnavailable:
                await asyncio.sleep(0.5)


def _code(frame: CallResult | CallError) -> str:
    return frame.code if type(frame) is CallError else ""


def _maybe_learned(data: Raw) -> bool:
    """Cheap test of a live frame: could it be a CALL whose answer is learned?"""
    b = data if isinstance(data, bytes) else data.encode()
    return any(a in b for a in (b'"BootNotification"', b'"Authorize"', b"Transaction"))


def _valid(version: str, action: str, ans: Answer) -> bool:
    """An answer built from the CSMS's earlier answers is still checked against the schema (a CSMS may have sent an
    idTagInfo the schema refuses)."""
    try:
        schemas.validate(version, action, "response", ans.payload)
    except schemas.UnknownAction:
        return True
    except schemas.SchemaViolation:
        return False
    return True
