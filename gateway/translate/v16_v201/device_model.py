"""GetVariables, SetVariables, GetBaseReport, GetReport (CSMS -> 1.6 charger), ocpp-translation.md §3.5-§3.6.

* GetVariables: one GetConfiguration with every mappable key (split into several when more keys than
  ``GetConfigurationMaxKeys``, when that value is an ASCII number of at most 18 digits: ``"²".isdigit()`` is true
  and ``int()`` of thousands of digits raises), results in request order; items the translator answers itself
  (``attributeType`` not ``Actual``, unknown, gateway-answered, write-only) need no call; when no item needs the
  charger, the answer is local.
* SetVariables: one ChangeConfiguration per mappable item, in request order; a CALLERROR or timeout from the charger
  for one item makes that item ``Rejected`` (reasonCode ``ChargerError``) and the others go on (``Plan.on_error``).
* GetBaseReport ``ConfigurationInventory``/``FullInventory``: GetConfiguration without keys, answer ``Accepted``
  (``EmptyResultSet`` when nothing is reported, ``Rejected`` on a charger CALLERROR), then NotifyReport CALLs in
  ``Plan.then_to_csms`` (``report_items_per_message`` entries each, seqNo 0.., ``tbc`` on all but the last).
  ``FullInventory`` adds the gateway-answered variables; ``SummaryInventory`` is built from state alone
  (availability of station, EVSEs and connectors, plus ``Problem`` for connectors in error), answered locally.
* GetReport: the same report filtered by ``componentVariable`` (a component without variable selects all its
  variables); ``componentCriteria`` is applied to gateway-answered entries only and 1.6 keys count as
  ``Available``/``Enabled`` (**decision**): criteria without those two leave no 1.6 key, and no call is made.
* The configuration snapshot in the state is refreshed from every GetConfiguration answer and after every
  accepted ChangeConfiguration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.ocpp.numbers import small_int
from gateway.translate.base import JsonDict, OutCall, Plan
from gateway.translate.v16_v201.config_keys import (
    PHASE_ROTATION,
    key_to_device_model,
    phase_rotation_part,
    phase_rotation_with,
    resolve,
    to_16_value,
    to_201_value,
)
from gateway.translate.v16_v201.context import Context, local, status_info
from gateway.translate.v16_v201.transactions import CONNECTOR_STATUS

__all__ = ["get_base_report", "get_report", "get_variables", "set_variables"]

CALLERROR = "__callerror__"  # marker key of a substituted answer (Plan.on_error)
ReportEntry = tuple[dict[str, Any], dict[str, Any], str | None, str]  # component, variable, value, mutability


def _echo(item: Mapping[str, Any]) -> JsonDict:
    return {"component": dict(item["component"]), "variable": dict(item["variable"])}


def _remember(ctx: Context, answers: list[JsonDict]) -> tuple[dict[str, JsonDict], set[str]]:
    known: dict[str, JsonDict] = {}
    unknown: set[str] = set()
    for answer in answers:
        for entry in answer.get("configurationKey") or []:
            known[entry["key"]] = entry
            ctx.state.config[entry["key"]] = {"value": entry.get("value"), "readonly": bool(entry.get("readonly"))}
        unknown.update(answer.get("unknownKey") or [])
    return known, unknown


def _max_keys(ctx: Context) -> int:
    if ctx.options.get_configuration_max_keys:
        return ctx.options.get_configuration_max_keys
    keys = small_int(str((ctx.state.config.get("GetConfigurationMaxKeys") or {}).get("value") or ""))
    return keys if keys else 1000


# -- GetVariables ----------------------------------------------------------------------------------------------


def get_variables(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    items: list[Mapping[str, Any]] = list(payload["getVariableData"])
    results: list[JsonDict] = []
    pending: list[tuple[int, Any]] = []
    keys: list[str] = []
    for item in items:
        result = _echo(item)
        results.append(result)
        if item.get("attributeType", "Actual") != "Actual":
            result["attributeStatus"] = "NotSupportedAttributeType"
            continue
        target = resolve(ctx, item["component"], item["variable"])
        if target.outcome == "gateway":
            result.update(attributeStatus="Accepted", attributeType="Actual", attributeValue=target.value or "")
        elif target.outcome != "key":
            result["attributeStatus"] = target.outcome
        elif target.entry is not None and target.entry.writeonly:
            result.update(attributeStatus="Rejected", attributeStatusInfo=status_info("WriteOnly"))
        elif len(target.key) > 50:
            result["attributeStatus"] = "UnknownVariable"
        else:
            pending.append((len(results) - 1, target))
            if target.key not in keys:
                keys.append(target.key)
    if not keys:
        return local({"getVariableResult": results}, "answered_from_state")
    size = _max_keys(ctx)
    calls = [OutCall("GetConfiguration", {"key": keys[i : i + size]}) for i in range(0, len(keys), size)]

    def finish(answers: list[JsonDict]) -> JsonDict:
        known, _unknown = _remember(ctx, answers)
        for index, target in pending:
            result = results[index]
            entry = known.get(target.key)
            if entry is None:
                result["attributeStatus"] = "UnknownVariable"
                continue
            value = str(entry.get("value") or "")
            if target.connector is not None:
                part = phase_rotation_part(value, target.connector)
                if part is None:
                    result["attributeStatus"] = "UnknownVariable"
                    continue
                value = part
            result.update(
                attributeStatus="Accepted", attributeType="Actual", attributeValue=to_201_value(target.entry, value)
            )
        return {"getVariableResult": results}

    return Plan(calls=calls, finish=finish)


# -- SetVariables ----------------------------------------------------------------------------------------------


def set_variables(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    items: list[Mapping[str, Any]] = list(payload["setVariableData"])
    results: list[JsonDict] = []
    sent: list[tuple[int, str, str]] = []  # result index, key, value
    rotation = str((ctx.state.config.get(PHASE_ROTATION) or {}).get("value") or "")
    for item in items:
        result = _echo(item)
        results.append(result)
        if item.get("attributeType", "Actual") != "Actual":
            result["attributeStatus"] = "NotSupportedAttributeType"
            continue
        target = resolve(ctx, item["component"], item["variable"])
        if target.outcome in ("UnknownComponent", "UnknownVariable"):
            result["attributeStatus"] = target.outcome
            continue
        if target.outcome == "gateway" or (target.entry is not None and target.entry.readonly):
            result.update(attributeStatus="Rejected", attributeStatusInfo=status_info("ReadOnly"))
            continue
        value: str | None = to_16_value(target.entry, str(item["attributeValue"]))
        if value is not None and target.connector is not None:
            rotation = value = phase_rotation_with(rotation, target.connector, value)
        if value is None:
            result.update(attributeStatus="Rejected", attributeStatusInfo=status_info("InvalidValue"))
        elif len(value) > 500:
            result.update(attributeStatus="Rejected", attributeStatusInfo=status_info("ValueTooLong"))
        elif len(target.key) > 50:
            result["attributeStatus"] = "UnknownVariable"
        else:
            sent.append((len(results) - 1, target.key, value))
    if not sent:
        return local({"setVariableResult": results}, "answered_from_state")
    calls = [OutCall("ChangeConfiguration", {"key": key, "value": value}) for _, key, value in sent]

    def finish(answers: list[JsonDict]) -> JsonDict:
        for (index, key, value), answer in zip(sent, answers, strict=True):
            status = str(answer.get("status", ""))
            result = results[index]
            if CALLERROR in answer:
                result.update(attributeStatus="Rejected", attributeStatusInfo=status_info("ChargerError"))
            elif status == "NotSupported":
                result["attributeStatus"] = "UnknownVariable"
            else:
                result["attributeStatus"] = status
                result["attributeType"] = "Actual"
            if status in ("Accepted", "RebootRequired"):
                previous = ctx.state.config.get(key) or {}
                ctx.state.config[key] = {"value": value, "readonly": bool(previous.get("readonly"))}
        return {"setVariableResult": results}

    return Plan(calls=calls, finish=finish, on_error=lambda index, code, description: {CALLERROR: code})


# -- reports ---------------------------------------------------------------------------------------------------


def _config_entries(ctx: Context, answers: list[JsonDict]) -> list[ReportEntry]:
    out: list[ReportEntry] = []
    for answer in answers:
        for item in answer.get("configurationKey") or []:
            key = str(item["key"])
            value = item.get("value")
            for component, variable, text in key_to_device_model(ctx, key, value):
                if key == "AuthorizationKey":
                    out.append((component, variable, None, "WriteOnly"))
                else:
                    out.append((component, variable, text or "", "ReadOnly" if item.get("readonly") else "ReadWrite"))
    return out


def _state_entries(ctx: Context, full: bool) -> list[ReportEntry]:
    """Availability of station, EVSEs, connectors and their problems (+ identity and Tx points when ``full``)."""
    status = ctx.state.connector_status
    station = str((status.get(0) or {}).get("status", "Available"))
    out: list[ReportEntry] = [
        (
            {"name": "ChargingStation"},
            {"name": "AvailabilityState"},
            station if station in CONNECTOR_STATUS else "Available",
            "ReadOnly",
        )
    ]
    boot = ctx.state.boot or {}
    if full:
        for var, field in (("Model", "chargePointModel"), ("VendorName", "chargePointVendor")):
            if field in boot:
                out.append(({"name": "ChargingStation"}, {"name": var}, str(boot[field]), "ReadOnly"))
        serial = boot.get("chargePointSerialNumber") or boot.get("chargeBoxSerialNumber")
        if serial:
            out.append(({"name": "ChargingStation"}, {"name": "SerialNumber"}, str(serial), "ReadOnly"))
        if "firmwareVersion" in boot:
            out.append(({"name": "Controller"}, {"name": "FirmwareVersion"}, str(boot["firmwareVersion"]), "ReadOnly"))
        out.append(({"name": "TxCtrlr"}, {"name": "TxStartPoint"}, "PowerPathClosed", "ReadOnly"))
        out.append(({"name": "TxCtrlr"}, {"name": "TxStopPoint"}, "EVConnected,Authorized", "ReadOnly"))
    evses: dict[int, list[int]] = {}
    for connector in sorted(c for c in status if c > 0):
        evses.setdefault(ctx.evse_of(connector)[0], []).append(connector)
    for evse_id, connectors in sorted(evses.items()):
        states = [CONNECTOR_STATUS.get(str(status[c].get("status")), "Available") for c in connectors]
        evse_state = next((s for s in ("Faulted", "Unavailable", "Occupied", "Reserved") if s in states), "Available")
        out.append(({"name": "EVSE", "evse": {"id": evse_id}}, {"name": "AvailabilityState"}, evse_state, "ReadOnly"))
        for connector, state in zip(connectors, states, strict=True):
            evse_id, connector_id = ctx.evse_of(connector)
            component = {"name": "Connector", "evse": {"id": evse_id, "connectorId": connector_id}}
            out.append((component, {"name": "AvailabilityState"}, state, "ReadOnly"))
            if status[connector].get("errorCode", "NoError") != "NoError":
                out.append((dict(component), {"name": "Problem"}, "true", "ReadOnly"))
    return out


def _notify_reports(ctx: Context, request_id: int, entries: list[ReportEntry]) -> list[OutCall]:
    size = max(1, ctx.options.report_items_per_message)
    chunks = [entries[i : i + size] for i in range(0, len(entries), size)]
    calls: list[OutCall] = []
    for seq, chunk in enumerate(chunks):
        data: list[JsonDict] = []
        for component, variable, value, mutability in chunk:
            attribute: JsonDict = {"type": "Actual", "mutability": mutability, "persistent": True}
            if value is not None:
                attribute["value"] = value[:2500]
            data.append({"component": component, "variable": variable, "variableAttribute": [attribute]})
        report = {
            "requestId": request_id,
            "generatedAt": ctx.now(),
            "seqNo": seq,
            "tbc": seq < len(chunks) - 1,
            "reportData": data,
        }
        calls.append(OutCall("NotifyReport", report))
    return calls


def _report_plan(ctx: Context, request_id: int, state_entries: list[ReportEntry], keep: Any, ask_charger: bool) -> Plan:
    """Answer Accepted/EmptyResultSet, then the NotifyReports; ``keep`` filters 1.6-derived entries."""
    if not ask_charger:
        if not state_entries:
            return local({"status": "EmptyResultSet"}, "report_empty")
        plan = local({"status": "Accepted"}, "report_from_state")
        plan.then_to_csms.extend(_notify_reports(ctx, request_id, state_entries))
        return plan
    plan = Plan(calls=[OutCall("GetConfiguration", {})], on_error=lambda index, code, description: {CALLERROR: code})

    def finish(answers: list[JsonDict]) -> JsonDict:
        if CALLERROR in answers[0]:
            return {"status": "Rejected", "statusInfo": status_info("ChargerError")}
        _remember(ctx, answers)
        entries = [e for e in _config_entries(ctx, answers) if keep(e)] + state_entries
        if not entries:
            return {"status": "EmptyResultSet"}
        plan.then_to_csms.extend(_notify_reports(ctx, request_id, entries))
        return {"status": "Accepted"}

    plan.finish = finish
    return plan


def get_base_report(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    base, request_id = str(payload["reportBase"]), int(payload["requestId"])
    if base == "SummaryInventory":
        return _report_plan(ctx, request_id, _state_entries(ctx, full=False), None, ask_charger=False)
    state = _state_entries(ctx, full=True) if base == "FullInventory" else []
    return _report_plan(ctx, request_id, state, lambda entry: True, ask_charger=True)


def _selects(selectors: list[Mapping[str, Any]], entry: ReportEntry) -> bool:
    component, variable = entry[0], entry[1]
    for sel in selectors:
        comp = sel["component"]
        if comp.get("name") != component.get("name") or comp.get("instance") != component.get("instance"):
            continue
        if "evse" in comp and comp["evse"] != component.get("evse"):
            continue
        var = sel.get("variable")
        if var is None or (var.get("name") == variable.get("name") and var.get("instance") == variable.get("instance")):
            return True
    return False


def get_report(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    request_id = int(payload["requestId"])
    selectors: list[Mapping[str, Any]] = list(payload.get("componentVariable") or [])
    criteria = set(payload.get("componentCriteria") or [])
    state = _state_entries(ctx, full=True)
    if criteria:
        # gateway-answered entries: everything is Available and Enabled; Problem only where an error is reported
        problem = {str(c["name"]) + str(c.get("evse")) for c, v, _, _ in state if v["name"] == "Problem"}
        if not criteria & {"Available", "Enabled"}:
            state = [e for e in state if "Problem" in criteria and str(e[0]["name"]) + str(e[0].get("evse")) in problem]
    if selectors:
        state = [e for e in state if _selects(selectors, e)]
        wants_keys = any(
            resolve(ctx, s["component"], s.get("variable") or {"name": ""}).outcome != "UnknownComponent"
            for s in selectors
        )
        keep: Any = lambda entry: _selects(selectors, entry)  # noqa: E731
    else:
        wants_keys, keep = True, lambda entry: True
    ask = wants_keys and (not criteria or bool(criteria & {"Available", "Enabled"}))
    return _report_plan(ctx, request_id, state, keep, ask_charger=ask)
