"""Event-loop lag: how late the loop runs a callback that was due, sampled four times a second.

A loop busy with one long callback delays every charger; this is the figure that says so
(``ocppgw_event_loop_lag_seconds``). The probe is one task per process; its cost is a timer every 250 ms.
"""

from __future__ import annotations

import asyncio

from gateway.metrics import Metrics

__all__ = ["probe_loop_lag"]

INTERVAL_S = 0.25


async def probe_loop_lag(metrics: Metrics, interval: float = INTERVAL_S) -> None:
    """Run until cancelled, observing each sample's lateness."""
    loop = asyncio.get_running_loop()
    observe = metrics.loop_lag.observe
    while True:
        due = loop.time() + interval
        await asyncio.sleep(interval)
        observe(max(0.0, loop.time() - due))
