"""Admin CALLs to a charger connected to this process: the admin API's, and those forwarded from another node."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from gateway.app.connection import Conn
from gateway.core.jobs import AdminAnswer
from gateway.metrics import Metrics

__all__ = ["call_local"]


async def call_local(
    conns: Mapping[str, Conn],
    metrics: Metrics,
    log: Any,
    cid: str,
    action: str,
    payload: dict[str, Any],
    timeout: float,
) -> tuple[int, dict[str, Any]]:
    """Send a CALL of the gateway's own to a charger connected to this process; (HTTP status, JSON body)."""
    conn = conns.get(cid)
    if conn is None:
        return 404, {"error": "charger not connected"}
    answered: asyncio.Future[AdminAnswer] = asyncio.get_running_loop().create_future()

    def receive(answer: AdminAnswer | BaseException) -> None:
        if answered.done():
            return
        if isinstance(answer, BaseException):
            answered.set_exception(answer)
        else:
            answered.set_result(answer)

    try:
        conn.session.call_charger(action, payload, receive)
    except OverflowError as e:
        metrics.admin_calls.labels("queue_full").inc()
        return 409, {"error": str(e)}
    try:
        async with asyncio.timeout(timeout):
            answer = await asyncio.shield(answered)
    except TimeoutError:
        metrics.admin_calls.labels("timeout").inc()
        return 504, {"error": "no answer from the charger in time"}
    except ConnectionError as e:
        metrics.admin_calls.labels("disconnected").inc()
        return 502, {"error": str(e)}
    log.info("admin_call_answered", charger_id=cid, action=action, ok=answer.error is None)
    if answer.error is not None:
        metrics.admin_calls.labels("callerror").inc()
        code, desc, details = answer.error
        return 200, {"error": {"code": code, "description": desc, "details": details}}
    metrics.admin_calls.labels("ok").inc()
    return 200, {"result": answer.result}
