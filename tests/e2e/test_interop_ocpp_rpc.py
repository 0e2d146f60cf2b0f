"""ocpp-rpc (npm) on both ends, the gateway in between: a second independent, strict OCPP-J implementation.

The `ocpp` package (tests/e2e/test_ocpp_package_peers.py) is Python, validates with jsonschema and is the gateway's
own source of schemas. ocpp-rpc is JavaScript, validates every message both ways with its own copy of the official
schemas (Ajv, ``strictMode: true``) and frames OCPP-J its own way, so it catches what the gateway and the `ocpp`
package could agree on wrongly. Its peers are ``tests/interop/charger.js`` and ``csms.js`` (run by node, driven by
:mod:`tests.ocpp_rpc`): the charger runs a story (boot, status, authorize, one transaction with meter values,
heartbeat) and answers the CSMS's CALLs; the CSMS answers every CALL validly and sends GetConfiguration/GetVariables,
RemoteStartTransaction/RequestStartTransaction, TriggerMessage and Reset.

What a user checks: every CALL answered (no CALLERROR), neither strict peer refused a frame, the transaction ids are
the ones each side assigned, the CSMS's CALLs reached the charger (translated where the versions differ) and their
answers came back. Over 1.6 and 2.0.1 pass-through, set-up A (1.6 charger, 2.0.1 CSMS), set-up B (2.0.1 charger,
1.6 CSMS), both mixed with the `ocpp` package (ocpp-rpc charger with its CSMS, its charger with the ocpp-rpc CSMS),
and OCPP 2.1 pass-through. Skipped only when node is not on PATH (scripts/test.sh installs ocpp-rpc).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from gateway.ops.demo import Charger16, Charger201, ConnectionClosed, OcppWs
from gateway.ops.demo_csms import DemoCsms
from gateway.ops.lifecycle import Running, running_gateway
from tests.helpers import make_config
from tests.ocpp_rpc import NodePeer, RpcCharger, RpcCsms, rpc_charger, rpc_csms
from tests.peers import now_iso

TIMEOUT = 20

STORY16 = [
    "BootNotification",
    "StatusNotification",
    "Authorize",
    "StartTransaction",
    "StatusNotification",
    "MeterValues",
    "StopTransaction",
    "StatusNotification",
    "Heartbeat",
]
STORY2 = [
    "BootNotification",
    "StatusNotification",
    "Authorize",
    "TransactionEvent",
    "StatusNotification",
    "MeterValues",
    "TransactionEvent",
    "TransactionEvent",
    "StatusNotification",
    "Heartbeat",
]
#: the charger's subprotocol and the backend's version of each set-up
SETUPS = {
    "pass-1.6": ("ocpp1.6", "1.6"),
    "pass-2.0.1": ("ocpp2.0.1", "2.0.1"),
    "A-1.6-to-2.0.1": ("ocpp1.6", "2.0.1"),
    "B-2.0.1-to-1.6": ("ocpp2.0.1", "1.6"),
}


@contextlib.asynccontextmanager
async def gateway_to(url: str, version: str, **sections: Any) -> AsyncIterator[Running]:
    async with running_gateway(make_config({"csms": {"url": url, "ocpp": version}}, **sections)) as running:
        yield running


def assert_no_refusals(*peers: NodePeer) -> None:
    """No strict-mode rejection, malformed frame or unhandled CALL on any ocpp-rpc peer."""
    assert not [e for p in peers for e in p.problems()], "a strict peer refused something:\n" + "\n".join(
        p.transcript() for p in peers
    )


async def story_answered(cp: RpcCharger, story: list[str]) -> list[dict[str, Any]]:
    """Wait for the charger's story; every CALL of it got a CALLRESULT. Returns the answers, in order."""
    await cp.wait_for("story_done")
    answers = cp.answers()
    assert [a["action"] for a in answers] == story, cp.transcript()
    assert all("response" in a for a in answers), f"CALLs answered with a CALLERROR:\n{cp.transcript()}"
    assert not cp.of("closed"), f"the gateway closed the charger:\n{cp.transcript()}"
    return answers


def actions_at(csms: RpcCsms, cid: str) -> list[str]:
    return [c["action"] for c in csms.of("call", identity=cid)]


def assert_tx_events_consistent(events: list[dict[str, Any]]) -> str:
    """2.0.1 TransactionEvents of one transaction as a CSMS got them: one id, seqNo 0.., Started first, Ended last."""
    assert events, "no TransactionEvent reached the CSMS"
    ids = {e["transactionInfo"]["transactionId"] for e in events}
    assert len(ids) == 1, f"one transaction, several ids: {ids}"
    assert [e["seqNo"] for e in events] == list(range(len(events)))
    assert events[0]["eventType"] == "Started" and events[-1]["eventType"] == "Ended"
    assert all(e["eventType"] == "Updated" for e in events[1:-1])
    return ids.pop()


# ------------------------------------------------------------------------------------ CSMS-initiated CALLs


async def csms16_commands(csms: RpcCsms, cp: RpcCharger, cid: str, charger_v16: bool) -> None:
    """A 1.6 CSMS reads configuration, starts remotely, triggers a Heartbeat and resets: all reach the charger."""
    heartbeats = len(csms.calls(cid, "Heartbeat"))
    conf = await csms.call(cid, "GetConfiguration", {"key": ["HeartbeatInterval", "NoSuchKey"]})
    assert "response" in conf, conf
    keys = {k["key"]: k.get("value") for k in conf["response"].get("configurationKey", [])}
    assert keys == {"HeartbeatInterval": "300"} and conf["response"].get("unknownKey") == ["NoSuchKey"], conf
    remote = await csms.call(cid, "RemoteStartTransaction", {"idTag": "REMOTE-7", "connectorId": 1})
    assert remote.get("response") == {"status": "Accepted"}, remote
    trigger = await csms.call(cid, "TriggerMessage", {"requestedMessage": "Heartbeat"})
    assert trigger.get("response") == {"status": "Accepted"}, trigger
    triggered = await cp.wait(lambda e: e["event"] == "answer" and bool(e.get("triggered")))
    assert "response" in triggered, cp.transcript()
    assert len(csms.calls(cid, "Heartbeat")) == heartbeats + 1
    reset = await csms.call(cid, "Reset", {"type": "Soft"})
    assert reset.get("response") == {"status": "Accepted"}, reset

    if charger_v16:
        assert [c["params"] for c in cp.handled("GetConfiguration")] == [{"key": ["HeartbeatInterval", "NoSuchKey"]}]
        assert [c["params"] for c in cp.handled("RemoteStartTransaction")] == [{"idTag": "REMOTE-7", "connectorId": 1}]
        assert [c["params"] for c in cp.handled("Reset")] == [{"type": "Soft"}]
    else:  # set-up B: translated to 2.0.1
        (variables,) = cp.handled("GetVariables")
        asked = [(d["component"]["name"], d["variable"]["name"]) for d in variables["params"]["getVariableData"]]
        assert ("OCPPCommCtrlr", "HeartbeatInterval") in asked
        (start,) = cp.handled("RequestStartTransaction")
        assert start["params"]["idToken"]["idToken"] == "REMOTE-7" and start["params"].get("evseId") == 1
        assert isinstance(start["params"]["remoteStartId"], int)
        assert [c["params"] for c in cp.handled("Reset")] == [{"type": "Immediate"}]  # soft_reset_as default
    assert [c["params"] for c in cp.handled("TriggerMessage")] == [{"requestedMessage": "Heartbeat"}]


async def csms2_commands(csms: RpcCsms, cp: RpcCharger, cid: str, charger_v16: bool) -> None:
    """A 2.0.1 CSMS reads a variable, starts remotely, triggers a Heartbeat and resets: all reach the charger."""
    heartbeats = len(csms.calls(cid, "Heartbeat"))
    wanted = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
    got = await csms.call(cid, "GetVariables", {"getVariableData": [wanted]})
    assert "response" in got, got
    (result,) = got["response"]["getVariableResult"]
    assert (result["attributeStatus"], result.get("attributeValue")) == ("Accepted", "300"), got
    assert (result["component"], result["variable"]) == (wanted["component"], wanted["variable"])
    token = {"idToken": "REMOTE-9", "type": "Central"}
    remote = await csms.call(cid, "RequestStartTransaction", {"idToken": token, "remoteStartId": 42, "evseId": 1})
    assert remote.get("response", {}).get("status") == "Accepted", remote
    trigger = await csms.call(cid, "TriggerMessage", {"requestedMessage": "Heartbeat"})
    assert trigger.get("response", {}).get("status") == "Accepted", trigger
    triggered = await cp.wait(lambda e: e["event"] == "answer" and bool(e.get("triggered")))
    assert "response" in triggered, cp.transcript()
    assert len(csms.calls(cid, "Heartbeat")) == heartbeats + 1
    reset = await csms.call(cid, "Reset", {"type": "Immediate"})
    assert reset.get("response", {}).get("status") == "Accepted", reset

    if charger_v16:  # set-up A: translated to 1.6
        (conf,) = cp.handled("GetConfiguration")
        assert "HeartbeatInterval" in conf["params"]["key"]
        (start,) = cp.handled("RemoteStartTransaction")
        assert start["params"]["idTag"] == "REMOTE-9" and start["params"].get("connectorId") == 1
        assert [c["params"] for c in cp.handled("Reset")] == [{"type": "Hard"}]
    else:
        assert [c["params"] for c in cp.handled("GetVariables")] == [{"getVariableData": [wanted]}]
        assert [c["params"] for c in cp.handled("RequestStartTransaction")] == [
            {"idToken": token, "remoteStartId": 42, "evseId": 1}
        ]
        assert [c["params"] for c in cp.handled("Reset")] == [{"type": "Immediate"}]
    assert [c["params"] for c in cp.handled("TriggerMessage")] == [{"requestedMessage": "Heartbeat"}]


# ------------------------------------------------------------------------------------ ocpp-rpc on both ends


async def test_ocpp16_pass_through_between_strict_ocpp_rpc_peers() -> None:
    cid = "RPC16-PASS"
    async with asyncio.timeout(TIMEOUT), rpc_csms("ocpp1.6") as csms, gateway_to(csms.url, "1.6") as gw:
        async with rpc_charger(gw.charger_url(), cid, "ocpp1.6") as cp:
            assert (await cp.wait_for("open"))["protocol"] == "ocpp1.6"
            answers = await story_answered(cp, STORY16)
            assert actions_at(csms, cid) == STORY16
            # the CSMS's transaction id is the one the charger got and uses
            (start,) = csms.calls(cid, "StartTransaction")
            tx = start["reply"]["transactionId"]
            assert answers[3]["response"]["transactionId"] == tx
            assert [c["params"]["transactionId"] for c in csms.calls(cid, "MeterValues")] == [tx]
            assert [c["params"]["transactionId"] for c in csms.calls(cid, "StopTransaction")] == [tx]
            await csms16_commands(csms, cp, cid, charger_v16=True)
        assert_no_refusals(cp, csms)


async def test_ocpp201_pass_through_between_strict_ocpp_rpc_peers() -> None:
    cid = "RPC201-PASS"
    async with asyncio.timeout(TIMEOUT), rpc_csms("ocpp2.0.1") as csms, gateway_to(csms.url, "2.0.1") as gw:
        async with rpc_charger(gw.charger_url(), cid, "ocpp2.0.1") as cp:
            assert (await cp.wait_for("open"))["protocol"] == "ocpp2.0.1"
            await story_answered(cp, STORY2)
            assert actions_at(csms, cid) == STORY2
            events = [c["params"] for c in csms.calls(cid, "TransactionEvent")]
            assert assert_tx_events_consistent(events) == "RPC-TX-1"
            await csms2_commands(csms, cp, cid, charger_v16=False)
        assert_no_refusals(cp, csms)


async def test_setup_a_ocpp_rpc_16_charger_behind_ocpp_rpc_201_csms() -> None:
    cid = "RPC-A-1"
    async with asyncio.timeout(TIMEOUT), rpc_csms("ocpp2.0.1") as csms, gateway_to(csms.url, "2.0.1") as gw:
        async with rpc_charger(gw.charger_url(), cid, "ocpp1.6") as cp:
            assert (await cp.wait_for("open"))["protocol"] == "ocpp1.6"
            answers = await story_answered(cp, STORY16)
            got = actions_at(csms, cid)
            for action in ("BootNotification", "StatusNotification", "Authorize", "TransactionEvent", "Heartbeat"):
                assert action in got, got
            # the gateway assigned both ids: the charger's integer maps to one 2.0.1 transaction, Started..Ended
            tx16 = answers[3]["response"]["transactionId"]
            assert isinstance(tx16, int)
            assert answers[3]["response"]["idTagInfo"]["status"] == "Accepted"
            events = [c["params"] for c in csms.calls(cid, "TransactionEvent")]
            assert_tx_events_consistent(events)
            assert events[0]["idToken"]["idToken"] == "TAG-OK"
            assert events[-1]["transactionInfo"].get("stoppedReason") == "Local"
            assert answers[6]["response"]["idTagInfo"]["status"] == "Accepted"  # StopTransaction
            await csms2_commands(csms, cp, cid, charger_v16=True)
        assert_no_refusals(cp, csms)


async def test_setup_b_ocpp_rpc_201_charger_behind_ocpp_rpc_16_csms() -> None:
    cid = "RPC-B-1"
    async with asyncio.timeout(TIMEOUT), rpc_csms("ocpp1.6") as csms, gateway_to(csms.url, "1.6") as gw:
        async with rpc_charger(gw.charger_url(), cid, "ocpp2.0.1") as cp:
            assert (await cp.wait_for("open"))["protocol"] == "ocpp2.0.1"
            answers = await story_answered(cp, STORY2)
            got = actions_at(csms, cid)
            for action in ("BootNotification", "StatusNotification", "Authorize", "StartTransaction", "Heartbeat"):
                assert action in got, got
            # the CSMS's integer id is the one its MeterValues and StopTransaction carry
            (start,) = csms.calls(cid, "StartTransaction")
            tx = start["reply"]["transactionId"]
            assert (start["params"]["idTag"], start["params"]["meterStart"]) == ("TAG-OK", 1000)
            assert [c["params"]["transactionId"] for c in csms.calls(cid, "StopTransaction")] == [tx]
            assert all(c["params"].get("transactionId", tx) == tx for c in csms.calls(cid, "MeterValues"))
            assert answers[3]["response"].get("idTokenInfo", {}).get("status") == "Accepted"
            await csms16_commands(csms, cp, cid, charger_v16=False)
        assert_no_refusals(cp, csms)


async def test_ocpp21_pass_through_between_strict_ocpp_rpc_peers() -> None:
    cid = "RPC21-PASS"
    versions = {"ocpp_versions": ["1.6", "2.0.1", "2.1"]}
    async with (
        asyncio.timeout(TIMEOUT),
        rpc_csms("ocpp2.1") as csms,
        gateway_to(csms.url, "2.1", listen=versions) as gw,
    ):
        async with rpc_charger(gw.charger_url(), cid, "ocpp2.1") as cp:
            assert (await cp.wait_for("open"))["protocol"] == "ocpp2.1", cp.transcript()
            await story_answered(cp, STORY2)
            assert actions_at(csms, cid) == STORY2
            assert assert_tx_events_consistent([c["params"] for c in csms.calls(cid, "TransactionEvent")]) == "RPC-TX-1"
            await csms2_commands(csms, cp, cid, charger_v16=False)
        assert_no_refusals(cp, csms)


# -------------------------------------------------------------------- mixed: ocpp-rpc with the `ocpp` package


@pytest.mark.parametrize("setup", SETUPS)
async def test_ocpp_rpc_charger_with_ocpp_package_csms(setup: str) -> None:
    subprotocol, version = SETUPS[setup]
    cid = f"RPC-MIX-{setup}"
    v16 = subprotocol == "ocpp1.6"
    csms = DemoCsms(interval=120)
    url = await csms.start()
    try:
        async with asyncio.timeout(TIMEOUT), gateway_to(url, version) as gw:
            async with rpc_charger(gw.charger_url(), cid, subprotocol) as cp:
                answers = await story_answered(cp, STORY16 if v16 else STORY2)
                assert answers[0]["response"]["interval"] == 120  # the ocpp package CSMS's own answer
                assert (csms.transactions_started, csms.transactions_completed) == (1, 1)
                (tx,) = csms.transaction_ids[cid]
                if version == "1.6":
                    assert [p["transactionId"] for p in csms.calls(cid, "StopTransaction")] == [tx]
                    if v16:
                        assert answers[3]["response"]["transactionId"] == tx
                else:
                    events = csms.calls(cid, "TransactionEvent")
                    assert assert_tx_events_consistent(events) == tx
                    if not v16:
                        assert tx == "RPC-TX-1"
                point = await csms.point(cid)
                if version == "1.6":
                    conf = await point.call(call16.GetConfiguration(key=["HeartbeatInterval"]), suppress=False)
                    assert [(k["key"], k["value"]) for k in conf.configuration_key] == [("HeartbeatInterval", "300")]
                    remote = await point.call(call16.RemoteStartTransaction(id_tag="REMOTE-7"), suppress=False)
                    assert remote.status == "Accepted"
                    assert (await point.call(call16.Reset(type="Hard"), suppress=False)).status == "Accepted"
                else:
                    wanted = [{"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]
                    got = await point.call(call201.GetVariables(get_variable_data=wanted), suppress=False)
                    assert [(r["attribute_status"], r.get("attribute_value")) for r in got.get_variable_result] == [
                        ("Accepted", "300")
                    ]
                    remote = await point.remote_start("REMOTE-9")
                    assert remote is not None and remote.status == "Accepted"
                    assert (await point.call(call201.Reset(type="Immediate"), suppress=False)).status == "Accepted"
                handled = [c["action"] for c in cp.of("call")]
                assert handled == (
                    ["GetConfiguration", "RemoteStartTransaction", "Reset"]
                    if v16
                    else ["GetVariables", "RequestStartTransaction", "Reset"]
                )
            assert_no_refusals(cp)
    finally:
        await csms.stop()


@contextlib.asynccontextmanager
async def ocpp_package_charger(url: str, cid: str, subprotocol: str) -> AsyncIterator[Any]:
    """The demo's `ocpp` package charger (Charger16 or Charger201) through the gateway, its receive loop running."""
    kind: type[Any] = Charger16 if subprotocol == "ocpp1.6" else Charger201
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/{cid}", protocols=(subprotocol,)) as ws:
        assert ws.protocol == subprotocol
        cp = kind(cid, OcppWs(ws))
        reader = asyncio.create_task(cp.start())
        try:
            yield cp
        finally:
            await ws.close()
            with contextlib.suppress(ConnectionClosed):
                await reader


async def drive16(cp: Any) -> int:
    """The `ocpp` package 1.6 charger's story; returns the transaction id it got."""
    await cp.call(call16.BootNotification(charge_point_model="Py16", charge_point_vendor="ocpp"), suppress=False)
    await cp.call(call16.StatusNotification(connector_id=1, error_code="NoError", status="Available"), suppress=False)
    assert (await cp.call(call16.Authorize(id_tag="TAG-OK"), suppress=False)).id_tag_info["status"] == "Accepted"
    start = await cp.call(
        call16.StartTransaction(connector_id=1, id_tag="TAG-OK", meter_start=1000, timestamp=now_iso()), suppress=False
    )
    sampled = [{"value": "1500", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]
    meter = [{"timestamp": now_iso(), "sampledValue": sampled}]
    tx = int(start.transaction_id)
    await cp.call(call16.MeterValues(connector_id=1, transaction_id=tx, meter_value=meter), suppress=False)
    await cp.call(
        call16.StopTransaction(meter_stop=2000, timestamp=now_iso(), transaction_id=tx, reason="Local"), suppress=False
    )
    await cp.call(call16.Heartbeat(), suppress=False)
    return tx


async def drive201(cp: Any) -> str:
    """The `ocpp` package 2.0.1 charger's story; returns its transaction id."""
    station = {"model": "Py201", "vendorName": "ocpp"}
    await cp.call(call201.BootNotification(charging_station=station, reason="PowerUp"), suppress=False)
    await cp.call(
        call201.StatusNotification(timestamp=now_iso(), connector_status="Available", evse_id=1, connector_id=1),
        suppress=False,
    )
    token = {"idToken": "TAG-OK", "type": "ISO14443"}
    assert (await cp.call(call201.Authorize(id_token=token), suppress=False)).id_token_info["status"] == "Accepted"
    tx = "PY-TX-1"

    def meter(wh: float) -> list[dict[str, Any]]:
        return [{"timestamp": now_iso(), "sampledValue": [{"value": wh, "measurand": "Energy.Active.Import.Register"}]}]

    for seq, (event, trigger, info, extra) in enumerate(
        [
            (
                "Started",
                "Authorized",
                {"chargingState": "Charging"},
                {"id_token": token, "evse": {"id": 1, "connector_id": 1}},
            ),
            ("Updated", "MeterValuePeriodic", {}, {}),
            ("Ended", "StopAuthorized", {"stoppedReason": "Local"}, {}),
        ]
    ):
        await cp.call(
            call201.TransactionEvent(
                event_type=event,
                timestamp=now_iso(),
                trigger_reason=trigger,
                seq_no=seq,
                transaction_info={"transactionId": tx, **info},
                meter_value=meter(1000.0 + 500 * seq),
                **extra,
            ),
            suppress=False,
        )
    await cp.call(call201.Heartbeat(), suppress=False)
    return tx


@pytest.mark.parametrize("setup", SETUPS)
async def test_ocpp_package_charger_with_ocpp_rpc_csms(setup: str) -> None:
    subprotocol, version = SETUPS[setup]
    cid = f"PY-MIX-{setup}"
    v16 = subprotocol == "ocpp1.6"
    async with asyncio.timeout(TIMEOUT), rpc_csms(f"ocpp{version}") as csms, gateway_to(csms.url, version) as gw:
        async with ocpp_package_charger(gw.charger_url(), cid, subprotocol) as cp:
            tx = await drive16(cp) if v16 else await drive201(cp)
            for action in ("BootNotification", "StatusNotification", "Authorize", "Heartbeat"):
                assert csms.calls(cid, action), actions_at(csms, cid)
            if version == "1.6":
                (start,) = csms.calls(cid, "StartTransaction")
                assigned = start["reply"]["transactionId"]
                assert [c["params"]["transactionId"] for c in csms.calls(cid, "StopTransaction")] == [assigned]
                if v16:
                    assert tx == assigned
            else:
                events = [c["params"] for c in csms.calls(cid, "TransactionEvent")]
                tx_id = assert_tx_events_consistent(events)
                if not v16:
                    assert tx_id == tx
            if version == "1.6":
                conf = await csms.call(cid, "GetConfiguration", {"key": ["HeartbeatInterval"]})
                assert [(k["key"], k["value"]) for k in conf["response"]["configurationKey"]] == [
                    ("HeartbeatInterval", "300")
                ], conf
                remote = await csms.call(cid, "RemoteStartTransaction", {"idTag": "REMOTE-7", "connectorId": 1})
                reset = await csms.call(cid, "Reset", {"type": "Hard"})
            else:
                wanted = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
                got = await csms.call(cid, "GetVariables", {"getVariableData": [wanted]})
                (result,) = got["response"]["getVariableResult"]
                assert (result["attributeStatus"], result.get("attributeValue")) == ("Accepted", "300"), got
                token = {"idToken": "REMOTE-9", "type": "Central"}
                remote = await csms.call(
                    cid, "RequestStartTransaction", {"idToken": token, "remoteStartId": 7, "evseId": 1}
                )
                reset = await csms.call(cid, "Reset", {"type": "Immediate"})
            assert remote.get("response", {}).get("status") == "Accepted", remote
            assert reset.get("response", {}).get("status") == "Accepted", reset
            assert [a for a, _ in cp.handled] == (
                ["GetConfiguration", "RemoteStartTransaction", "Reset"]
                if v16
                else ["GetVariables", "RequestStartTransaction", "Reset"]
            )
    assert_no_refusals(csms)
