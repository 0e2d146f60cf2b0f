"""Admin CALLs to a charger connected to this process: the admin API's, and those forwarded from another node.

Every answer is ``(HTTP status, body)``. 200: the charger answered, ``{"result": payload}`` or, for its CALLERROR,
``{"error": {"code", "description", "details"}}``. Otherwise the gateway could not get an answer, and says why in
the same shape, with a code of its own (:func:`failure`): ``NotConnected`` (404), ``QueueFull`` (409),
``Timeout`` (504), ``Disconnected`` (502), and, for a charger on another node, ``StoreUnavailable`` (503),
``NodeUnreachable`` (504), ``BadReply`` (502).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from gateway.app.connection import Conn
from gateway.core.jobs import AdminAnswer
from gateway.metrics import Metrics

__all__ = ["call_local", "failure"]


def failure(code: str, description: str) -> dict[str, Any]:
    """The body of an admin CALL the gateway could not carry out (the shape of a charger's CALLERROR)."""
    return {"error": {"code": code, "description": description, "details": {}}}


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
        return 404, failure("NotConnected", "charger not connected")
    answered: asyncio.Future[AdminAnswer] = asyncio.get_running_loop().create_future()

    def receive(answer: AdminAnswer | BaseException) -> None:
        if answered.done():  # the caller stopped waiting (timed out): nobody to tell
            return
        if isinstance(answer, BaseException):
            answered.set_exception(answer)
        else:
            answered.set_result(answer)

    try:
        conn.session.call_charger(action, payload, receive)
    except OverflowError as e:
        metrics.admin_calls.labels("queue_full").inc()
        return 409, failure("QueueFull", str(e))
    try:
        async with asyncio.timeout(timeout):
            answer = await asyncio.shield(answered)
    except TimeoutError:
        answered.cancel()  # a later answer (or the charger's disconnection) is dropped, not left unretrieved
        metrics.admin_calls.labels("timeout").inc()
        return 504, failure("Timeout", "no answer from the charger in time")
    except ConnectionError as e:
        metrics.admin_calls.labels("disconnected").inc()
        return 502, failure("Disconnected", str(e))
    log.info("admin_call_answered", charger_id=cid, action=action, ok=answer.error is None)
    if answer.error is not None:
        metrics.admin_calls.labels("callerror").inc()
        code, desc, details = answer.error
        return 200, {"error": {"code": code, "description": desc, "details": details}}
    metrics.admin_calls.labels("ok").inc()
    return 200, {"result": answer.result}
