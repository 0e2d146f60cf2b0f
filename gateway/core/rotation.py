"""Basic auth password rotation by the CSMS (OCPP 2.0.1 A01 / 1.6 security whitepaper): which CALL sets the
charger's password, what the charger's acceptance looks like, and the answer the gateway gives when it terminates
the rotation itself (``backends.<name>.auth.password_rotation: terminate``). Pure; the session applies it
(:mod:`gateway.core.session`): under ``passthrough`` it watches the CALLs it sends to the charger and reports an
accepted new password; under ``terminate`` it hands such a CSMS CALL to its driver instead of the charger.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.ocpp.versions import is_v16

__all__ = ["ROTATION_ACTIONS", "intercept_csms_call", "rejected_answer", "rotation_accepted", "rotation_offer"]

#: the only CALLs that can set the Basic auth password (1.6 AuthorizationKey, 2.0.1 SecurityCtrlr.BasicAuthPassword)
ROTATION_ACTIONS = frozenset({"ChangeConfiguration", "SetVariables"})


def _is_basic_auth_variable(item: Mapping[str, Any]) -> bool:
    comp, var = item.get("component"), item.get("variable")
    return (
        isinstance(comp, Mapping)
        and comp.get("name") == "SecurityCtrlr"
        and isinstance(var, Mapping)
        and var.get("name") == "BasicAuthPassword"
    )


def rotation_offer(action: str, payload: Mapping[str, Any], version: str) -> str | None:
    """The new Basic auth password a CSMS CALL sets, or None when the CALL does not set it."""
    if is_v16(version) and action == "ChangeConfiguration":
        if payload.get("key") == "AuthorizationKey" and isinstance(payload.get("value"), str):
            return str(payload["value"])
        return None
    if not is_v16(version) and action == "SetVariables":
        data = payload.get("setVariableData")
        if isinstance(data, list):
            for item in data:
                if isinstance(item, Mapping) and _is_basic_auth_variable(item):
                    value = item.get("attributeValue")
                    return value if isinstance(value, str) else None
    return None


def intercept_csms_call(
    action: str, payload: Mapping[str, Any], version: str
) -> tuple[dict[str, Any] | None, str | None]:
    """For a CSMS CALL: (the answer the gateway gives when it terminates the rotation, the new password).

    ``(None, None)`` for every CALL that does not set the Basic auth password. The answer is the one the charger
    would give when accepting it. A 2.0.1 ``SetVariables`` that also sets other variables gets them ``Rejected``
    (the gateway answers for the whole request and does not split it; CSMSs send the password alone, A01).
    """
    password = rotation_offer(action, payload, version)
    if password is None:
        return None, None
    if is_v16(version):
        return {"status": "Accepted"}, password
    results: list[dict[str, Any]] = []
    for item in payload.get("setVariableData", []):
        if not isinstance(item, Mapping):
            continue
        r: dict[str, Any] = {
            "attributeStatus": "Accepted" if _is_basic_auth_variable(item) else "Rejected",
            "component": item.get("component"),
            "variable": item.get("variable"),
        }
        if "attributeType" in item:
            r["attributeType"] = item["attributeType"]
        results.append(r)
    return {"setVariableResult": results}, password


def rotation_accepted(payload: Mapping[str, Any], version: str) -> bool:
    """Whether a charger's CALLRESULT to the rotation CALL accepted the new password."""
    ok = ("Accepted", "RebootRequired")
    if is_v16(version):
        return payload.get("status") in ok
    results = payload.get("setVariableResult")
    if not isinstance(results, list):
        return False
    return any(
        isinstance(r, Mapping) and _is_basic_auth_variable(r) and r.get("attributeStatus") in ok for r in results
    )


def rejected_answer(answer: Mapping[str, Any]) -> dict[str, Any]:
    """``answer`` (from :func:`intercept_csms_call`) with every status Rejected: the new password could not be kept."""
    if "status" in answer:
        return {"status": "Rejected"}
    results = answer.get("setVariableResult")
    if isinstance(results, list):
        return {"setVariableResult": [{**r, "attributeStatus": "Rejected"} for r in results if isinstance(r, dict)]}
    return dict(answer)
