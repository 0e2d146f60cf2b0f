"""The call lane: OCPP-J's "one outstanding CALL per direction, matched by unique id, with a deadline and a bounded
queue", written once for every party that speaks OCPP-J through the gateway.

A lane carries *jobs* toward one peer. A job is whatever its user needs to finish one piece of work: a charger's
CALL forwarded as it is, a translation plan of several CALLs (:mod:`gateway.core.plan`), an admin CALL with its
answer's receiver, a mirror copy. At most one job is current; the others wait in a bounded queue, in order. The
current job has at most one CALL on the wire at a time, known by its unique id and given a deadline on the caller's
clock. Pure: no frames, sockets, tasks or clock of its own; its users send the CALL themselves and tell the lane.

States and moves (anything else is a bug in the caller, not a peer's fault)::

    free ──offer──▶ current          START: the caller starts the job now (sends its first CALL, then sent())
    free ──begin(uid, action)──▶ waiting   offer and sent in one step (a job of one CALL); False when not free
    free/current ──offer──▶ queued   QUEUED: behind the current job, or the lane is held
                   offer at max_queued: FULL (the caller answers the version's "busy" CALLERROR; nothing is queued)
    current ──sent(uid, action)──▶ waiting   a CALL of the current job is on the wire, deadline = now + timeout_s
    waiting ──answer(uid)──▶ current the answer's unique id matches: the job is returned, its CALL is off the wire
                   answer(other id): None (a late or unknown answer: the caller drops and counts it)
    waiting ──expire(now)──▶ current the deadline passed: the job is returned (the caller ends or retries it)
    current ──done()──▶ next         the next queued job becomes current and is returned (the caller starts it);
                                     None when none waits or the lane is held
    hold() / release()               held: jobs queue, none starts; release() returns the job to start, if any

Users: the charger session's two directions (:mod:`gateway.core.session`), the link caller that mirror feeds and
the cutover probe speak through (:mod:`gateway.links.caller`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Generic, TypeVar

__all__ = ["FULL", "QUEUED", "START", "Lane"]

J = TypeVar("J")

#: what :meth:`Lane.offer` did with a job
START, QUEUED, FULL = 0, 1, 2


class Lane(Generic[J]):
    """One direction toward one peer. ``max_queued`` bounds the queue; ``timeout_s`` is each CALL's deadline."""

    __slots__ = (
        "action", "current", "deadline", "held", "last_id", "max_queued", "queue", "started", "timeout_s", "unique_id",
    )  # fmt: skip

    def __init__(self, max_queued: int, timeout_s: float) -> None:
        self.max_queued = max_queued
        self.timeout_s = timeout_s
        #: the job in progress (None: the lane is free)
        self.current: J | None = None
        #: the unique id of its CALL on the wire (None: none is), when it was sent and when it is overdue
        self.unique_id: str | None = None
        #: the action and unique id of the last CALL sent (kept after its answer, for counting and logging)
        self.action = ""
        self.last_id = ""
        self.started = 0.0
        self.deadline = 0.0
        #: the jobs waiting, in order: an empty tuple until the first one waits (an empty deque costs ~760 bytes, and
        #: most lanes of an idle fleet never queue a job: 2 per charger, ~1.5 KB of its idle memory)
        self.queue: deque[J] | tuple[()] = ()
        #: jobs queue and none starts (the backend link is down, a cutover waits for in-flight CALLs)
        self.held = False

    # ------------------------------------------------------------------ jobs in

    def offer(self, job: J) -> int:
        """:data:`START` (``job`` is current: start it), :data:`QUEUED`, or :data:`FULL` (refused)."""
        if self.current is None and not self.held and not self.queue:
            self.current = job
            return START
        if len(self.queue) >= self.max_queued:
            return FULL
        self._waiting().append(job)
        return QUEUED

    def begin(self, job: J, unique_id: str, action: str, now: float) -> bool:
        """:meth:`offer` and :meth:`sent` in one step, for a job of one CALL that goes out at once: True when the
        lane was free (``job`` is current, its CALL on the wire); False, and nothing done, otherwise (then
        :meth:`offer` it)."""
        if self.current is not None or self.held or self.queue:
            return False
        self.current = job
        self.unique_id = self.last_id = unique_id
        self.action = action
        self.started = now
        self.deadline = now + self.timeout_s
        return True

    def push(self, job: J) -> J | None:
        """Queue a job of the gateway's own, unbounded (it follows one the queue already admitted); the job to start
        now, if the lane was free."""
        self._waiting().append(job)
        return self._next() if self.current is None else None

    # ------------------------------------------------------------------ the CALL on the wire

    def sent(self, unique_id: str, action: str, now: float) -> None:
        """A CALL of the current job went out with ``unique_id`` at ``now``."""
        self.unique_id = self.last_id = unique_id
        self.action = action
        self.started = now
        self.deadline = now + self.timeout_s

    def answer(self, unique_id: str) -> J | None:
        """The current job when ``unique_id`` is that of its CALL on the wire (now off it); None otherwise."""
        if unique_id != self.unique_id or self.unique_id is None:
            return None
        self.unique_id = None
        return self.current

    def overdue(self, now: float) -> bool:
        return self.unique_id is not None and self.deadline <= now

    def expire(self, now: float) -> J | None:
        """The current job when its CALL's deadline passed (the CALL is forgotten); None otherwise."""
        if self.unique_id is None or self.deadline > now:
            return None
        self.unique_id = None
        return self.current

    def abandon(self) -> J | None:
        """Forget the CALL on the wire (its peer went away); the current job, if a CALL was outstanding."""
        if self.unique_id is None:
            return None
        self.unique_id = None
        return self.current

    # ------------------------------------------------------------------ jobs out

    def done(self) -> J | None:
        """The current job has ended: the next one, now current, for the caller to start (None: none)."""
        self.current = None
        self.unique_id = None
        if self.held or not self.queue:
            return None
        job = self.current = self._waiting().popleft()
        return job

    def hold(self) -> None:
        self.held = True

    def release(self) -> J | None:
        """Stop holding: the job to start now, if the lane is free and one waits."""
        self.held = False
        return self._next() if self.current is None else None

    def clear(self) -> list[J]:
        """Empty the lane (the session ended): every job it held, current first."""
        jobs = ([] if self.current is None else [self.current]) + list(self.queue)
        self.current = None
        self.unique_id = None
        self.queue = ()
        return jobs

    # ------------------------------------------------------------------ looking

    def idle(self) -> bool:
        """No job current or waiting."""
        return self.current is None and not self.queue

    def quiet(self) -> bool:
        """No CALL on the wire."""
        return self.unique_id is None

    def _next(self) -> J | None:
        if self.held or not self.queue:
            return None
        job = self.current = self._waiting().popleft()
        return job

    def _waiting(self) -> deque[J]:
        q = self.queue
        if type(q) is deque:
            return q
        q = self.queue = deque()
        return q

    def requeue(self, job: J) -> None:
        """``job`` waits first again (its CALL was lost with the link: it goes out again when the lane is
        released)."""
        self.current = None
        self._waiting().appendleft(job)

    def withdraw(self, jobs: Sequence[J]) -> None:
        """Take ``jobs`` (each waiting in the queue) out of it."""
        if jobs:
            q = self._waiting()
            for job in jobs:
                q.remove(job)
