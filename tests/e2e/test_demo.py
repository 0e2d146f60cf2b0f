"""``ocpp-gateway demo``: gateway, built-in CSMS and simulated chargers in one process, frames printed live."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sys
from pathlib import Path

import pytest

from gateway.ops.demo import run_demo

ROOT = Path(__file__).resolve().parents[2]


def _lines(out: str, cid: str, arrow: str, backend: str, kind: str, action: str) -> list[str]:
    pattern = re.compile(
        rf"^\d\d:\d\d:\d\d\.\d{{3}}  {re.escape(cid)}\s+{arrow} {re.escape(backend)}\s+{kind}\s+{action}\b"
    )
    return [line for line in out.splitlines() if pattern.match(line)]


async def test_demo_prints_frames_both_ways_for_every_version(capsys: pytest.CaptureFixture[str]) -> None:
    async with asyncio.timeout(30):
        rc = await run_demo(chargers=3, duration=5, port=0, admin_port=0)
    assert rc == 0
    out = capsys.readouterr().out

    # banner
    assert re.search(r"chargers connect to\s+ws://127\.0\.0\.1:\d+/ocpp/<charger id>", out)
    assert re.search(r"metrics\s+http://127\.0\.0\.1:\d+/metrics\b", out)
    assert re.search(r"chargers API\s+http://127\.0\.0\.1:\d+/api/chargers\b", out)
    assert "Ctrl-C to stop" in out

    # charger -> CSMS, both versions, with their answers
    assert _lines(out, "CP16-001", "──▶", "csms-16", "CALL", "BootNotification")
    assert _lines(out, "CP16-001", "◀──", "csms-16", "CALLRESULT", "BootNotification")[0].endswith(
        "interval=300 status=Accepted"
    )
    assert _lines(out, "CP201-002", "──▶", "csms-201", "CALL", "BootNotification")
    assert _lines(out, "CP201-002", "◀──", "csms-201", "CALLRESULT", "BootNotification")
    (start16,) = _lines(out, "CP16-001", "──▶", "csms-16", "CALL", "StartTransaction")[:1]
    assert re.search(r"connector=1 idTag=\w+ meterStart=\d+", start16)
    (started16,) = _lines(out, "CP16-001", "◀──", "csms-16", "CALLRESULT", "StartTransaction")[:1]
    assert re.search(r"transactionId=1\d\d\d status=Accepted", started16)
    assert any(
        "event=Started" in line for line in _lines(out, "CP201-002", "──▶", "csms-201", "CALL", "TransactionEvent")
    )

    # a 2.1 charger, translated for the 2.0.1 CSMS (set-up C): answers come back under the gateway's ids; its
    # stream is opened through a wrapped DataTransfer the CSMS accepts, and its SENDs are shown (and never answered)
    assert _lines(out, "CP21-003", "──▶", "csms-201", "CALL", "BootNotification")
    assert _lines(out, "CP21-003", "◀──", "csms-201", "CALLRESULT", r"\(translated")
    assert _lines(out, "CP21-003", "──▶", "csms-201", "CALL", "OpenPeriodicEventStream")
    assert _lines(out, "CP21-003", "──▶", "csms-201", "SEND", "NotifyPeriodicEventStream")[0].count("id=1 pending=0")
    assert any(
        "event=Started" in line for line in _lines(out, "CP21-003", "──▶", "csms-201", "CALL", "TransactionEvent")
    )

    # CSMS -> charger, every version (the CSMS reads the configuration after each boot), with the chargers' answers
    assert _lines(out, "CP16-001", "◀──", "csms-16", "CALL", "GetConfiguration")
    assert _lines(out, "CP16-001", "──▶", "csms-16", "CALLRESULT", "GetConfiguration")[0].endswith(
        "HeartbeatInterval=300 MeterValueSampleInterval=60"
    )
    assert _lines(out, "CP201-002", "◀──", "csms-201", "CALL", "GetVariables")
    assert _lines(out, "CP201-002", "──▶", "csms-201", "CALLRESULT", "GetVariables")

    # stdout is not a TTY here: no colours; lines stay readable
    assert "\033[" not in out
    frame_lines = [line for line in out.splitlines() if re.match(r"^\d\d:\d\d:\d\d\.\d{3}  ", line)]
    assert frame_lines and max(len(line) for line in frame_lines) <= 120
    assert "CALLERROR" not in out

    summary = re.search(r"demo stopped after [\d.]+ s: (\d+) frames relayed, (\d+) transaction", out)
    assert summary is not None
    assert int(summary.group(1)) == len(frame_lines)


async def test_cli_demo_runs_until_ctrl_c() -> None:
    """``python -m gateway demo`` as a user runs it (the CLI installs uvloop when it is importable): frames flow both
    ways for both versions, then SIGINT stops it cleanly with exit code 0 and the summary line."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "demo",
        "--chargers",
        "2",
        "--port",
        "0",
        "--admin-port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    wanted = {
        re.compile(r"CP16-001\s+──▶ csms-16\s+CALL\s+BootNotification"),
        re.compile(r"CP16-001\s+◀── csms-16\s+CALL\s+GetConfiguration"),
        re.compile(r"CP201-002\s+──▶ csms-201\s+CALL\s+BootNotification"),
        re.compile(r"CP201-002\s+◀── csms-201\s+CALL\s+GetVariables"),
    }
    seen: list[str] = []
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                while wanted:
                    raw = await proc.stdout.readline()
                    if not raw:
                        break  # the demo ended on its own: a failure, shown below
                    line = raw.decode(errors="replace")
                    seen.append(line)
                    wanted = {p for p in wanted if not p.search(line)}
        assert not wanted, "missing " + ", ".join(p.pattern for p in wanted) + " in:\n" + "".join(seen[-40:])
        proc.send_signal(signal.SIGINT)
        # bounded: the simulated chargers' ocpp-package CALLs can hold a shutdown up to their 15 s response timeout
        async with asyncio.timeout(60):
            rest, _ = await proc.communicate()
        out = "".join(seen) + rest.decode(errors="replace")
        assert proc.returncode == 0, out[-3000:]
        assert re.search(r"demo stopped after [\d.]+ s: \d+ frames relayed", out), out[-3000:]
        assert "Traceback" not in out, out[-3000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_shipped_config_runs_against_the_built_in_csms(tmp_path: Path) -> None:
    """README/config promise: `ocpp-gateway demo --csms-only` + `ocpp-gateway run --config config/gateway.yaml` relay a
    charger's BootNotification to the built-in CSMS and its answer back (ports moved to free ones)."""
    import socket

    import aiohttp
    import yaml

    def free() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    csms_port, port, admin = free(), free(), free()
    raw = yaml.safe_load((ROOT / "config" / "gateway.yaml").read_text())
    raw["listen"]["port"], raw["admin"]["port"] = port, admin
    raw["backends"]["demo-csms"]["url"] = f"ws://127.0.0.1:{csms_port}/ocpp"
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    csms = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "demo", "--csms-only", "--csms-port", str(csms_port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    gw = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "run", "--config", str(cfg),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert csms.stdout is not None
        async with asyncio.timeout(20):
            assert b"built-in CSMS" in await csms.stdout.readline()
            async with aiohttp.ClientSession() as http:
                while True:
                    try:
                        ws = await http.ws_connect(f"ws://127.0.0.1:{port}/ocpp/CP-CFG", protocols=("ocpp1.6",))
                        break
                    except aiohttp.ClientError:
                        await asyncio.sleep(0.1)
                boot = {"chargePointVendor": "V", "chargePointModel": "M"}
                await ws.send_str(json.dumps([2, "b1", "BootNotification", boot]))
                answer = json.loads((await ws.receive()).data)
                assert answer[:2] == [3, "b1"] and answer[2]["status"] == "Accepted"
                await ws.close()
    finally:
        for p in (gw, csms):
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        for p in (gw, csms):
            try:
                async with asyncio.timeout(20):
                    await p.wait()
            except TimeoutError:
                p.kill()
                await p.wait()


@pytest.mark.slow
async def test_site_demo_keeps_the_100_a_connection_under_its_limit(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.ops.site_sim import run_site_demo

    async with asyncio.timeout(60):
        rc = await run_site_demo(chargers=8, duration=14, port=0, admin_port=0)
    assert rc == 0
    out = capsys.readouterr().out
    assert "a 100 A connection" in out and "/api/sites/demo-site" in out
    rows = [line for line in out.splitlines() if re.match(r"^\d\d:\d\d:\d\d  (ok  |OVER) L1", line)]
    assert len(rows) >= 10
    assert not [r for r in rows if " OVER " in r], rows
    assert max(int(m) for m in re.findall(r"EVs (\d+) \(", out)) >= 4  # the site was short: the controller split it
    (verdict,) = re.findall(r"highest phase current ([\d.]+) A of 100 A; 0 of (\d+) one-second samples over", out)
    assert float(verdict[0]) <= 100.0
    # the demand-response event: announced, then the site under its 70 A (the line shows the limit in force)
    assert "demand response demo-peak: the site may draw 70 A for 12 s" in out
    during = [r for r in rows if "(event: 70)" in r]
    assert during
    for r in during:
        currents = [float(x) for x in re.findall(r"L\d +([\d.]+)", r)]
        assert max(currents) <= 70.0, r
