"""A non-conforming charger behind the gateway, a strict CSMS (the ``ocpp`` package, which validates every payload
against the official schemas) in front: with the charger's quirk profile its three quirks are repaired and every CALL
is answered; without it every one of them is refused. The compliance report (Redis store, as a fleet) then shows the
violations, the repairs and the rules it suggests, through the admin API and the CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from gateway.ops.demo_csms import DemoCsms, now_iso
from gateway.ops.lifecycle import running_gateway
from gateway.quirks import parse_quirks
from tests.helpers import make_config, raw_charger, recv_json

TIMEOUT = 30
SERIAL = "3N182720082F1S1B7551700016XYZ"  # 29 characters: CiString25 in 1.6
BOOT = {"chargePointVendor": "Quirky Co", "chargePointModel": "QX-1", "firmwareVersion": "2.4.1",
        "chargePointSerialNumber": SERIAL}  # fmt: skip
#: the charger's CALLs: boot (serial too long), status (enum in lower case), meter values (numbers, not strings)
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("BootNotification", BOOT),
    ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "charging", "timestamp": now_iso()}),
    ("MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": now_iso(), "sampledValue": [
        {"value": 1234.5, "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}]}),
]  # fmt: skip
PROFILE = {
    "name": "quirky-qx",
    "ocpp": "1.6",
    "match": {"vendor": "quirky*", "model": "QX-*", "firmware": ">=2.0, <3"},
    "rules": [
        {"name": "serial", "action": "BootNotification", "direction": "from_charger", "message": "call",
         "path": "$.chargePointSerialNumber", "repair": "truncate"},
        {"name": "status-case", "action": "StatusNotification", "direction": "from_charger", "message": "call",
         "path": "$.status", "repair": "enum_case"},
        {"name": "meter-text", "action": "MeterValues", "direction": "from_charger", "message": "call",
         "path": "$.meterValue[*].sampledValue[*].value", "repair": "coerce"},
    ],
}  # fmt: skip


async def send_calls(url: str, cid: str, rounds: int = 1) -> list[list[Any]]:
    answers = []
    async with raw_charger(url, cid, "ocpp1.6") as ws:
        for r in range(rounds):
            for i, (action, payload) in enumerate(CALLS):
                await ws.send_str(json.dumps([2, f"{cid}-{r}-{i}", action, payload]))
                answers.append(await recv_json(ws))
    return answers


async def test_the_profile_makes_a_quirky_charger_work_with_a_strict_csms(redis_url: str, tmp_path: Path) -> None:
    csms = DemoCsms(interval=120)
    url = await csms.start()
    try:
        async with asyncio.timeout(TIMEOUT):
            # without the profile (the report on): the strict CSMS refuses all three
            plain = make_config({"csms": {"url": url, "ocpp": "1.6"}}, store=redis_url,
                                compliance={"sample_rate": 1.0, "flush_interval_s": 0.2})  # fmt: skip
            async with running_gateway(plain) as running:
                answers = await send_calls(running.charger_url(), "QX-PLAIN", rounds=3)
            assert [a[0] for a in answers] == [4] * 9, answers
            # it got them as the charger sent them (the gateway forwards what no rule repairs byte for byte)
            assert [p["status"] for p in csms.calls("QX-PLAIN", "StatusNotification")] == ["charging"] * 3

            # with it: every CALL answered, the CSMS got the repaired payloads
            quirky = make_config({"csms": {"url": url, "ocpp": "1.6"}}, store=redis_url,
                                 quirks={"profiles": [PROFILE]},
                                 compliance={"sample_rate": 1.0, "flush_interval_s": 0.2,
                                             "models": [{"vendor": "Quirky Co", "model": "QX-1"}]})  # fmt: skip
            async with running_gateway(quirky) as running:
                answers = await send_calls(running.charger_url(), "QX-FIXED")
                assert [a[0] for a in answers] == [3, 3, 3], answers
                assert answers[0][2]["status"] == "Accepted"
                (boot,) = csms.calls("QX-FIXED", "BootNotification")
                assert boot["chargePointSerialNumber"] == SERIAL[:25]
                assert csms.calls("QX-FIXED", "StatusNotification")[0]["status"] == "Charging"
                meter = csms.calls("QX-FIXED", "MeterValues")[0]
                assert meter["meterValue"][0]["sampledValue"][0]["value"] == "1234.5"
                metrics = running.hub.metrics.registry
                for rule in ("serial", "status-case", "meter-text"):  # each fixed once so far
                    assert metrics.get_sample_value("ocppgw_quirk_repairs_total",
                                                    {"profile": "quirky-qx", "rule": rule}) == 1  # fmt: skip
                assert metrics.get_sample_value("ocppgw_schema_violations_total", {
                    "model": "Quirky Co/QX-1", "action": "StatusNotification", "outcome": "repaired"}) == 1  # fmt: skip

                # reconnected, the charger gets its profile at admission from its stored boot: repaired at once
                assert await running.hub.writer.flush(2)
                async with raw_charger(running.charger_url(), "QX-FIXED", "ocpp1.6") as ws:
                    await ws.send_str(json.dumps([2, "again", *CALLS[1]]))
                    assert (await recv_json(ws))[0] == 3

                # the report, fleet-wide from the store (both gateways wrote to it)
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(f"{running.admin_url()}/api/compliance") as resp,
                ):
                    assert resp.status == 200
                    report = await resp.json()
    finally:
        await csms.stop()

    (model,) = report["models"]
    assert (model["vendor"], model["model"], model["firmware"], model["chargers"]) == ("Quirky Co", "QX-1", "2.4.1", 2)
    assert model["messages"] == 13 and model["checked"] == 13
    found = {(v["action"], v["path"], v["kind"]): (v["repaired"], v["unrepaired"]) for v in model["violations"]}
    assert found == {
        ("BootNotification", "$.chargePointSerialNumber", "length"): (1, 3),
        ("StatusNotification", "$.status", "enum"): (2, 3),
        ("MeterValues", "$.meterValue[*].sampledValue[*].value", "type"): (1, 3),
    }
    assert {r["rule"]: (r["values"], r["violations"]) for r in model["repairs"]} == {
        "serial": (1, 1), "status-case": (2, 2), "meter-text": (1, 1),
    }  # fmt: skip
    (suggested,) = model["suggestions"]
    rules = {(r["path"], r["repair"]) for r in suggested["profile"]["rules"]}
    assert rules == {("$.chargePointSerialNumber", "truncate"), ("$.status", "enum_case"),
                     ("$.meterValue[*].sampledValue[*].value", "coerce")}  # fmt: skip
    # the snippet is YAML the config accepts as it is
    (profile,) = yaml.safe_load(suggested["yaml"])
    assert parse_quirks({"profiles": [profile]})[1] == []

    # the CLI reads the same report from the store
    config = tmp_path / "gw.yaml"
    config.write_text(yaml.safe_dump({"store": {"url": redis_url}, "backends": {"csms": {"url": url}},
                                      "routes": [{"match": "*", "primary": "csms"}]}))  # fmt: skip
    cli = [sys.executable, "-m", "gateway", "report", "compliance", "--config", str(config)]
    done = await asyncio.to_thread(subprocess.run, cli, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Quirky Co / QX-1 / firmware 2.4.1: 2 charger(s), 13 messages, 13 checked" in done.stdout
    assert "repair: truncate" in done.stdout and "# 3 violations" in done.stdout
    done = await asyncio.to_thread(subprocess.run, [*cli, "--json"], capture_output=True, text=True, timeout=60)
    assert json.loads(done.stdout)["models"][0]["violations"] == report["models"][0]["violations"]
