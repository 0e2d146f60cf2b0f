"""Admission pacing toward a backend: at most ``max_connects_per_s`` new charger links per second from this process.

After a gateway restart, a rolling update or a replica failure every charger reconnects within seconds; the gateway
opens each one's primary link before it accepts the charger, so without pacing the CSMS would see the whole fleet
connect at once. A :class:`ConnectPacer` (one per backend per process, held by the link factory) hands out turns
spaced ``1 / rate`` apart, first come first served (virtual scheduling: a burst of n chargers waits 0, 1/rate, ...,
(n-1)/rate; an idle pacer gives the next charger its turn at once). A charger whose turn would come later than
``max_connect_wait_s`` from now takes none and is refused at once (HTTP 503) with a ``Retry-After`` that spaces the
refused chargers out at the same rate after the queue, so that their retries arrive paced too.

Pure: the caller passes the clock (``loop.time()``) and sleeps until the turn; no task or timer per charger.
"""

from __future__ import annotations

import math

__all__ = ["MAX_RETRY_AFTER_S", "ConnectPacer"]

#: the longest Retry-After given (a fleet far larger than the rate allows comes back over at most this long)
MAX_RETRY_AFTER_S = 600


class ConnectPacer:
    """Turns for new links toward one backend, ``rate`` per second, each waited for at most ``max_wait_s``."""

    __slots__ = ("_interval", "_next", "_retry_next", "max_wait_s", "rate")

    def __init__(self, rate: float, max_wait_s: float) -> None:
        if rate <= 0 or max_wait_s < 0:
            raise ValueError("rate must be > 0 and max_wait_s >= 0")
        self.rate = rate
        self.max_wait_s = max_wait_s
        self._interval = 1.0 / rate
        #: the time of the next free turn
        self._next = -math.inf
        #: the time the next refused charger is told to come back
        self._retry_next = -math.inf

    def take(self, now: float) -> float | None:
        """Take the next turn: seconds to wait for it (0: now), or None when it would come later than
        ``max_wait_s`` from ``now`` (no turn is taken: see :meth:`retry_after`)."""
        at = max(now, self._next)
        wait = at - now
        if wait > self.max_wait_s + 1e-9:
            return None
        self._next = at + self._interval
        return wait

    def retry_after(self, now: float) -> int:
        """Whole seconds a refused charger should wait before it tries again (1..:data:`MAX_RETRY_AFTER_S`): the
        refused ones are told to come back one turn apart, after the turns already given."""
        at = max(self._retry_next, self._next, now)
        self._retry_next = at + self._interval
        return min(MAX_RETRY_AFTER_S, max(1, math.ceil(at - now - 1e-9)))
