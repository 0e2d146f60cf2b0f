"""The app layer's choice of a charger's quirk profile (gateway/app/quirks.py): at admission, and again at every
BootNotification (the session starts or stops repairing), and the recorder's batches to the store."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from gateway.app.quirks import ComplianceRecorder, QuirkBook
from gateway.config import Config, parse_config
from gateway.quirks import Identity
from gateway.store import StoreUnavailable
from gateway.store.memory import MemoryStore
from tests.unit.session_pair import SessionPair

SERIAL = {"name": "serial", "action": "BootNotification", "direction": "from_charger", "message": "call",
          "path": "$.chargePointSerialNumber", "repair": "truncate"}  # fmt: skip


def config(**sections: Any) -> Config:
    raw = {"backends": {"b": {"url": "ws://x/ocpp"}}, "routes": [{"match": "*", "primary": "b"}], **sections}
    return parse_config(raw, env={})


def conn_of(pair: SessionPair) -> Any:
    log = SimpleNamespace(info=lambda *a, **k: None)
    return SimpleNamespace(session=pair.session, charger_id="CP-1", quirk_state=None, log=log)


def boot(vendor: str) -> list[Any]:
    return [2, f"b-{vendor}", "BootNotification", {"chargePointVendor": vendor, "chargePointModel": "X1",
                                                    "chargePointSerialNumber": "S" * 30}]  # fmt: skip


def test_a_boot_switches_repairing_on_and_off() -> None:
    cfg = config(quirks={"profiles": [{"name": "acme", "ocpp": "1.6", "match": {"vendor": "acme"},
                                       "rules": [SERIAL]}]})  # fmt: skip
    pair = SessionPair("1.6")
    book = QuirkBook(cfg, pair.metrics, None, None)
    assert book.needs_boot and book.active
    conn = conn_of(pair)
    book.attach(conn, None)  # nothing stored: no profile yet, but boots are watched
    assert pair.session.quirks is None and pair.session.on_boot is not None
    pair.charger_sends(boot("ACME"))
    assert pair.backend.unread()[0][3]["chargePointSerialNumber"] == "S" * 25  # that very boot repaired
    pair.backend_answers({"status": "Accepted", "currentTime": "2025-01-01T00:00:00Z", "interval": 60})
    pair.charger_sends(boot("Other"))
    assert pair.session.quirks is None  # no longer this profile's charger: nothing per frame again
    assert pair.backend.unread()[-1][3]["chargePointSerialNumber"] == "S" * 30


def test_admission_uses_the_stored_boot() -> None:
    cfg = config(quirks={"profiles": [{"name": "acme", "ocpp": "1.6", "match": {"vendor": "acme"},
                                       "rules": [SERIAL]}]})  # fmt: skip
    pair = SessionPair("1.6")
    book = QuirkBook(cfg, pair.metrics, None, None)
    book.attach(conn_of(pair), Identity("ACME", "X1", "1.0"))
    assert pair.session.quirks is not None and pair.session.quirks.profile == "acme"


def test_without_profiles_or_report_nothing_is_attached() -> None:
    pair = SessionPair("1.6")
    book = QuirkBook(config(), pair.metrics, None, None)
    assert not book.active and not book.needs_boot
    book.attach(conn_of(pair), None)
    assert pair.session.quirks is None and pair.session.on_boot is None


async def test_the_recorder_adds_its_counts_to_the_store_and_keeps_them_while_it_is_away() -> None:
    cfg = config(compliance={"sample_rate": 1.0, "models": [{"vendor": "ACME", "model": "X1"}]})
    store = MemoryStore()
    pair = SessionPair("1.6")
    logged: list[str] = []
    log = SimpleNamespace(error=lambda event, **_: logged.append(event), info=lambda event, **_: logged.append(event))
    recorder = ComplianceRecorder(store.compliance(), cfg, pair.metrics, log)
    book = QuirkBook(cfg, pair.metrics, recorder, None)
    conn = conn_of(pair)
    book.attach(conn, None)
    pair.charger_sends(boot("ACME"))  # the serial is too long: a sampled violation
    recorder.count_frames(conn)
    down = SimpleNamespace(add=_unavailable)
    recorder.counters = down  # type: ignore[assignment]
    assert not await recorder.flush()
    recorder.counters = store.compliance()
    assert await recorder.flush()
    assert logged == ["compliance_not_stored", "compliance_stored_again"]  # once each, not per attempt
    (model,) = (await store.compliance().read()).items()
    key, rec = model
    assert key == ("ACME", "X1", "") and rec.chargers == 1
    assert rec.counts['["messages"]'] == 1 and rec.counts['["checked"]'] == 1
    assert pair.counter("ocppgw_schema_violations_total", model="ACME/X1", action="BootNotification",
                        outcome="unrepaired") == 1  # fmt: skip


async def _unavailable(batch: Any, max_fields: int) -> None:
    raise StoreUnavailable("down")
