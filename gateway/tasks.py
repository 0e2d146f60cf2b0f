"""Owning tasks: the one way the gateway stops a task it started."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["stop_task"]


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended. A cancellation aimed at the caller itself still propagates
    (unlike ``contextlib.suppress(CancelledError)`` around the await, which would swallow it)."""
    if task is None or task.done():
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
