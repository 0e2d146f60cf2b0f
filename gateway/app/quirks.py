"""Which quirk profile each charger gets, and the compliance report's counting for this process.

:class:`QuirkBook` holds the config's profiles, each compiled once (gateway/core/repair.py). It chooses a charger's
profile at admission, from its id and the last BootNotification the store holds (``get_boot``: one read, only when a
profile matches on what the charger says or the report is on), and again whenever a BootNotification arrives
(``Session.on_boot``), before that boot is repaired or forwarded: the session then starts or stops repairing. A
session gets a hook (gateway/core/quirks.py) only when a profile matches or the report is on; otherwise it gets
nothing, and a frame costs it one attribute test.

:class:`ComplianceRecorder` (``compliance:`` on) adds this process's counts to the store's fleet-wide report
(gateway/store/compliance.py) every ``flush_interval_s``, in one batch, off the message path: the models seen
(vendor, model, firmware as the charger said them; at most ``max_models`` per process, then other/other/other) with
their charger ids, the frames each model's chargers sent (read from the sessions' own frame counters at each flush:
nothing more per frame), the frames checked, and each violation and repair the hooks reported. When the store is
away the counts wait (merged, bounded by ``max_fields`` per model) and the failure is logged once.

The ``model`` label of ``ocppgw_schema_violations_total`` is bounded: ``<vendor>/<model>`` for a pair in
``compliance.models``, else ``profile:<name>`` of the charger's profile, else ``other``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.app.connection import Conn
from gateway.config import Config
from gateway.core.quirks import SessionQuirks, Sink
from gateway.core.repair import Repairs
from gateway.metrics import Metrics
from gateway.quirks import Identity, Profile, choose, identity_of
from gateway.store import Store, StoreUnavailable
from gateway.store.compliance import ComplianceCounters, ModelCounts, ModelKey
from gateway.tasks import stop_task

__all__ = ["ChargerQuirks", "ComplianceRecorder", "QuirkBook"]

UNKNOWN: ModelKey = ("unknown", "unknown", "")
OTHER: ModelKey = ("other", "other", "other")
MESSAGES, CHECKED = '["messages"]', '["checked"]'


@dataclass(slots=True, eq=False)
class ChargerQuirks:
    """What the book knows of one connected charger (``Conn.quirk_state``)."""

    identity: Identity | None
    model: ModelKey
    profile: str | None
    #: the session's ``frames_in`` already counted in the report
    frames_counted: int = 0
    recorder: ComplianceRecorder | None = None

    def ended(self, conn: Conn) -> None:
        """The charger's session ended: its last frames are counted now (its connection is gone at the next
        flush)."""
        if self.recorder is not None:
            self.recorder.count_frames(conn)


class ComplianceRecorder:
    """This process's counts of the compliance report, added to the store in batches."""

    def __init__(self, counters: ComplianceCounters, config: Config, metrics: Metrics, log: Any) -> None:
        self.counters = counters
        self.settings = config.compliance
        self.metrics = metrics
        self.log = log
        self._pending: dict[ModelKey, ModelCounts] = {}
        #: the hooks' counts since the last flush, by their fields (named when the batch is made)
        self._tallies: dict[ModelKey, dict[tuple[str, ...], int]] = {}
        self._models: set[ModelKey] = set()
        self._up = True
        self._task: asyncio.Task[None] | None = None

    def model(self, identity: Identity | None) -> ModelKey:
        if identity is None:
            return UNKNOWN
        key = identity.key()
        if key not in self._models:
            if len(self._models) >= self.settings.max_models:
                return OTHER
            self._models.add(key)
        return key

    def seen(self, model: ModelKey, cid: str) -> None:
        if model != UNKNOWN:  # a charger is counted as seen once it said what it is
            self._delta(model).chargers.add(cid)

    def add(self, model: ModelKey, name: str, n: int) -> None:
        if n:
            self._delta(model).add(name, n)

    def sink(self, model: ModelKey) -> Sink:
        """The hook's counter of one model (named by the JSON of its fields when the batch is written)."""

        def add(key: tuple[str, ...], n: int) -> None:
            tally = self._tallies.get(model)
            if tally is None:
                tally = self._tallies[model] = {}
            tally[key] = tally.get(key, 0) + n

        return add

    def count_frames(self, conn: Conn, but_the_last: bool = False) -> None:
        """What the charger sent since the last count (``but_the_last``: not the frame being handled, a boot that
        may change its model), and what its hook checked, for its model."""
        state = conn.quirk_state
        if not isinstance(state, ChargerQuirks):
            return
        s = conn.session
        upto = s.frames_in - (1 if but_the_last else 0)
        self.add(state.model, MESSAGES, upto - state.frames_counted)
        state.frames_counted = upto
        if s.quirks is not None:
            self.add(state.model, CHECKED, s.quirks.take_checked())

    def _delta(self, model: ModelKey) -> ModelCounts:
        d = self._pending.get(model)
        if d is None:
            d = self._pending[model] = ModelCounts()
        return d

    def start(self, conns: Callable[[], Iterable[Conn]]) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(conns), name="compliance-recorder")

    async def _run(self, conns: Callable[[], Iterable[Conn]]) -> None:
        while True:
            await asyncio.sleep(self.settings.flush_interval_s)
            for conn in list(conns()):
                self.count_frames(conn)
            await self.flush()

    async def flush(self) -> bool:
        """Add what is pending to the store; False (kept for the next time) when the store is away."""
        tallies, self._tallies = self._tallies, {}
        for model, tally in tallies.items():
            for key, n in tally.items():
                self.add(model, orjson.dumps(list(key)).decode(), n)
        batch, self._pending = self._pending, {}
        if not batch:
            return True
        try:
            await asyncio.shield(self.counters.add(batch, self.settings.max_fields))
        except StoreUnavailable as e:
            self.metrics.store_errors.labels("compliance").inc()
            if self._up:
                self.log.error("compliance_not_stored", error=str(e), models=len(batch))
                self._up = False
            for model, delta in batch.items():  # back in front of what came meanwhile
                mine = self._delta(model)
                mine.chargers |= delta.chargers
                for name, n in delta.counts.items():
                    mine.add(name, n)
            return False
        if not self._up:
            self.log.info("compliance_stored_again")
            self._up = True
        return True

    async def close(self, conns: Iterable[Conn]) -> None:
        """Stop counting; what the sessions still hold is added once more (bounded by the store's timeouts)."""
        await stop_task(self._task)
        self._task = None
        for conn in list(conns):
            self.count_frames(conn)
        await self.flush()


class QuirkBook:
    """The config's profiles, compiled, and the choice of one per charger (see the module docstring)."""

    def __init__(self, config: Config, metrics: Metrics, recorder: ComplianceRecorder | None, log: Any) -> None:
        self.profiles: tuple[Profile, ...] = config.quirks.profiles
        self.zone = config.quirks.zone
        self.metrics = metrics
        self.recorder = recorder
        self.log = log
        compliance = config.compliance
        self.labels = {(v.lower(), m.lower()): f"{v}/{m}" for v, m in compliance.models}
        rate = compliance.sample_rate if recorder is not None else 0.0
        self.sample_every = max(1, round(1 / rate)) if rate > 0 else 0
        self._compiled: dict[tuple[str, bool], Repairs] = {}
        #: a charger can get a hook at all (else admission reads nothing and sessions get nothing)
        self.active = bool(self.profiles) or recorder is not None
        #: admission reads the stored boot: some profile matches on what a charger says, or the report needs it
        self.needs_boot = recorder is not None or any(p.match.needs_boot() for p in self.profiles)

    async def identity(self, store: Store, cid: str) -> Identity | None:
        """What the charger said in its last BootNotification (the store's boot record), or None. A store that
        cannot be read admits the charger all the same: its profile is chosen at its next boot."""
        if not self.needs_boot:
            return None
        try:
            record = await store.get_boot(cid)
        except StoreUnavailable:
            return None
        return identity_of(record.get("request")) if record else None

    def attach(self, conn: Conn, identity: Identity | None) -> None:
        """Give the admitted charger its profile (or nothing), and watch its boots."""
        if not self.active:
            return
        state = ChargerQuirks(identity, UNKNOWN, None, recorder=self.recorder)
        conn.quirk_state = state
        conn.session.on_boot = lambda payload: self.booted(conn, payload)
        self.apply(conn, identity)

    def booted(self, conn: Conn, boot: dict[str, Any]) -> None:
        """A BootNotification arrived: choose again with what it says (before it is repaired or forwarded)."""
        state = conn.quirk_state
        assert isinstance(state, ChargerQuirks)
        identity = identity_of(boot)
        if identity == state.identity and conn.session.quirks is not None:
            return
        if self.recorder is not None:
            self.recorder.count_frames(conn, but_the_last=True)  # what came before the boot: the model it had
        self.apply(conn, identity)

    def apply(self, conn: Conn, identity: Identity | None) -> None:
        s = conn.session
        state = conn.quirk_state
        assert isinstance(state, ChargerQuirks)
        profile = choose(self.profiles, conn.charger_id, s.version, identity)
        name = profile.name if profile is not None else None
        if name != state.profile:
            conn.log.info("quirk_profile", profile=name, was=state.profile)
        state.identity, state.profile = identity, name
        recorder = self.recorder
        if profile is None and recorder is None:
            s.quirks = None
            return
        if recorder is not None:
            state.model = recorder.model(identity)
            recorder.seen(state.model, conn.charger_id)
            sink: Sink = recorder.sink(state.model)
        else:
            sink = _ignore
        translated = s.relay is not None
        repairs = self._repairs(profile, not translated) if profile is not None else None
        s.quirks = SessionQuirks(
            repairs=repairs, model=self._label(identity, profile), version=s.version, metrics=self.metrics,
            sink=sink, validating=s.validate or translated, sample_every=self.sample_every,
        )  # fmt: skip

    def _repairs(self, profile: Profile, backend_rules: bool) -> Repairs:
        key = (profile.name, backend_rules)
        r = self._compiled.get(key)
        if r is None:
            r = self._compiled[key] = Repairs(profile, self.zone, backend_rules=backend_rules)
        return r

    def _label(self, identity: Identity | None, profile: Profile | None) -> str:
        if identity is not None:
            label = self.labels.get((identity.vendor.lower(), identity.model.lower()))
            if label is not None:
                return label
        return f"profile:{profile.name}" if profile is not None else "other"


def _ignore(key: tuple[str, ...], n: int) -> None:
    return None
