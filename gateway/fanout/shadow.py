"""Shadow comparison: a mirror's answer held against the primary's, on the fields that carry a decision.

Compared: top-level ``status`` and the token results' ``status`` (``idTagInfo.status``, ``idTokenInfo.status``).
A divergence is counted (``ocppgw_shadow_divergences_total{action,primary,mirror}``) and sampled in the log
(``shadow_divergence``), so that an operator moving a fleet to a new CSMS sees what it would decide differently.
"""

from __future__ import annotations

from typing import Any

from gateway.metrics import Metrics
from gateway.ocpp.actions import action_label
from gateway.translate.base import JsonDict

__all__ = ["compare", "decision_fields", "diverges"]


def decision_fields(answer: JsonDict | None) -> dict[str, Any]:
    """The fields of an answer that carry a decision: top-level ``status`` and the token results' ``status``."""
    if not answer:
        return {}
    out: dict[str, Any] = {}
    if "status" in answer:
        out["status"] = answer["status"]
    for key in ("idTagInfo", "idTokenInfo"):
        info = answer.get(key)
        if isinstance(info, dict) and "status" in info:
            out["token_status"] = info["status"]
    return out


def diverges(primary: JsonDict | None, mirror: JsonDict | None) -> bool:
    """True when the mirror decided differently on a field both answers carry."""
    p, m = decision_fields(primary), decision_fields(mirror)
    return any(k in m and m[k] != v for k, v in p.items())


def compare(
    metrics: Metrics, log: Any, action: str, primary_name: str, mirror_name: str, primary: JsonDict | None,
    mirror: JsonDict,
) -> None:  # fmt: skip
    """Count and log a divergence of ``mirror``'s answer from the ``primary``'s (None: the primary gave none)."""
    if primary is None or not diverges(primary, mirror):
        return
    metrics.shadow_divergences.labels(action_label(action), primary_name, mirror_name).inc()
    log.info(
        "shadow_divergence", action=action, primary_decision=decision_fields(primary),
        mirror_decision=decision_fields(mirror),
    )  # fmt: skip
