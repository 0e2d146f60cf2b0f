"""The pure parts of local load management besides the allocator: site config (every error with its YAML path),
observations from session hook events, the controller's CALLs per version, demand-response events, meter readings.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import ConfigError, parse_config
from gateway.ocpp import schemas
from gateway.sites.allocation import Reading
from gateway.sites.config import ChargerSpec
from gateway.sites.events import Event, effective_limit, next_boundary, parse_event
from gateway.sites.meter import parse_reading
from gateway.sites.observe import DIRTY, METER, TX, ChargerObservation, measured
from gateway.sites.profiles import composite_limit, composite_request, iso, max_profile, parse_time

BASE: dict[str, Any] = {
    "backends": {"a": {"url": "ws://127.0.0.1:9100/ocpp"}},
    "routes": [{"match": "*", "primary": "a"}],
}


def sites(node: Any) -> Any:
    return parse_config({**BASE, "sites": node}, env={}).sites


def problems(node: Any) -> dict[str, str]:
    with pytest.raises(ConfigError) as e:
        sites(node)
    return dict(e.value.problems)


# ----------------------------------------------------------------------------------------------- config


def test_a_minimal_site_gets_the_documented_defaults() -> None:
    (site,) = sites({"lot": {"chargers": ["CP-1", "CP-2"], "limit": 63}})
    assert (site.name, site.unit, site.margin, site.phases, site.period_s, site.fairness) == (
        "lot",
        "A",
        0,
        3,
        10,
        "equal",
    )
    assert site.charger_defaults == ChargerSpec()
    assert site.fail_safe_a() == 31.5  # the limit split evenly over the listed chargers
    assert site.meter is None and site.profile.id != site.profile.fail_safe_id


def test_site_config_errors_name_their_yaml_path() -> None:
    got = problems(
        {
            "lot": {
                "chargers": ["CP-*"], "limit": -1, "unit": "mA", "margin": 5, "phases": 2, "fairness": "lottery",
                "charger_defaults": {"min_current_a": 40, "rate_unit": "VA", "bogus": 1},
                "charger_settings": {"OTHER-1": {"phases": 1}},
                "meter": {"topic": "a/#"}, "demand_response_topic": "x", "period_s": 0.01,
                "fail_safe": {"validity_s": 1}, "profile": {"id": 5, "fail_safe_id": 5, "stack_level": 0},
                "mqtt": "http://broker",
            },
            "bad name!": {},
        }
    )  # fmt: skip
    assert got["sites.lot.limit"] == "must be > 0"
    assert got["sites.lot.unit"] == "must be one of A, kW; got 'mA'"
    assert got["sites.lot.phases"] == "must be 1 or 3"
    assert got["sites.lot.fairness"].startswith("must be one of equal, priority")
    assert got["sites.lot.charger_defaults.min_current_a"] == "must be <= max_current_a (32)"
    assert got["sites.lot.charger_defaults.rate_unit"].startswith("must be one of A, W")
    assert got["sites.lot.charger_defaults.bogus"].startswith("unknown key")
    assert got["sites.lot.charger_settings.OTHER-1"] == "is not one of this site's chargers"
    assert got["sites.lot.meter.topic"].startswith("must be an MQTT topic name without wildcards")
    assert got["sites.lot.mqtt"] == "must be an mqtt:// or mqtts:// URL, got 'http://broker'"
    assert got["sites.lot.period_s"] == "must be 0.2..3600"
    assert got["sites.lot.fail_safe.current_a"].startswith("is required when chargers has globs")
    assert got["sites.lot.profile.fail_safe_id"] == "must differ from id"
    assert got["sites.lot.profile.stack_level"].startswith("must be above fail_safe_stack_level")
    assert got["sites.bad name!"].startswith("site names use")


def test_a_meter_needs_a_broker_and_validity_covers_two_periods() -> None:
    got = problems({"lot": {"chargers": ["A"], "limit": 10, "meter": {"topic": "m"}, "demand_response_topic": "d",
                            "period_s": 30, "fail_safe": {"validity_s": 40}}})  # fmt: skip
    assert got["sites.lot.meter"] == "needs sites.lot.mqtt (the broker the topic is on)"
    assert got["sites.lot.demand_response_topic"] == "needs sites.lot.mqtt (the broker the topic is on)"
    assert got["sites.lot.fail_safe.validity_s"].startswith("must be at least twice period_s (30)")


def test_a_charger_cannot_be_listed_in_two_sites_and_a_one_phase_site_has_one_phase_chargers() -> None:
    got = problems({"a": {"chargers": ["CP-1"], "limit": 10}, "b": {"chargers": ["CP-1"], "limit": 10},
                    "c": {"chargers": ["X"], "limit": 10, "phases": 1}})  # fmt: skip
    assert got["sites.b.chargers"] == "'CP-1' is already a charger of site 'a'"
    assert got["sites.c.charger_defaults.phases"] == "must be 1 on a one-phase site"


def test_a_kw_site_splits_its_fail_safe_in_amperes_per_phase() -> None:
    (site,) = sites({"lot": {"chargers": ["A", "B"], "limit": 22.08, "unit": "kW"}})
    assert site.fail_safe_a() == 16.0


@pytest.mark.parametrize(
    ("spec", "phases"),
    [
        (ChargerSpec(), (0, 1, 2)),
        (ChargerSpec(rotation="SRT"), (1, 0, 2)),
        (ChargerSpec(rotation="TSR"), (2, 1, 0)),
        (ChargerSpec(phases=1, phase="L3"), (2,)),
    ],
)
def test_phase_rotation_maps_the_chargers_phases_onto_the_sites(spec: ChargerSpec, phases: tuple[int, ...]) -> None:
    assert spec.site_phases() == phases


# ----------------------------------------------------------------------------------------------- observations


def sv16(**currents: float) -> list[dict[str, Any]]:
    values = [{"value": str(a), "measurand": "Current.Import", "phase": ph, "unit": "A"} for ph, a in currents.items()]
    values.append({"value": "1234", "measurand": "Energy.Active.Import.Register", "unit": "Wh"})
    return [{"timestamp": "2024-01-01T00:00:00Z", "sampledValue": values}]


def test_a_16_transaction_from_start_to_stop() -> None:
    o = ChargerObservation("1.6")
    assert o.apply("from_charger", "call", "StartTransaction", "u1", {"connectorId": 1, "idTag": "T"}, 10.0) == TX
    assert o.apply("from_backend", "callresult", "StartTransaction", "u1", {"transactionId": 42}, 10.1) == 0
    assert o.evses[1].tx == "42" and o.evses[1].since == 10.0
    mv = {"connectorId": 1, "transactionId": 42, "meterValue": sv16(L1=16.0, L2=15.5, L3=16.1)}
    assert o.apply("from_charger", "call", "MeterValues", "u2", mv, 11.0) == METER
    assert o.evses[1].phase_a == (16.0, 15.5, 16.1) and o.evses[1].measured_at == 11.0
    assert o.apply("from_charger", "call", "StopTransaction", "u3", {"transactionId": 42, "meterStop": 9}, 12.0) == TX
    assert o.evses == {}


def test_a_16_transaction_seen_only_by_its_meter_values_after_a_restart() -> None:
    o = ChargerObservation("1.6")
    mv = {"connectorId": 2, "transactionId": 7, "meterValue": sv16(L1=10.0)}
    assert o.apply("from_charger", "call", "MeterValues", "u", mv, 5.0) == TX | METER
    assert o.evses[2].tx == "7" and o.evses[2].phase_a == (10.0, 0.0, 0.0)
    # a stop whose id was never seen ends the only transaction (a translated session's StartTransaction answer
    # is the translator's)
    assert o.apply("from_charger", "call", "StopTransaction", "u", {"transactionId": 99, "meterStop": 1}, 6.0) == TX


def test_16_statuses_open_and_close_transactions_per_connector() -> None:
    o = ChargerObservation("1.6")
    assert o.apply("from_charger", "call", "StatusNotification", "u", {"connectorId": 1, "status": "Charging",
                                                                        "errorCode": "NoError"}, 1.0) == TX  # fmt: skip
    assert o.apply("from_charger", "call", "StatusNotification", "u", {"connectorId": 0, "status": "Available",
                                                                        "errorCode": "NoError"}, 1.0) == 0  # fmt: skip
    assert o.apply("from_charger", "call", "StatusNotification", "u", {"connectorId": 1, "status": "Finishing",
                                                                        "errorCode": "NoError"}, 2.0) == TX  # fmt: skip
    assert o.evses == {}


def test_a_201_transaction_event_sequence() -> None:
    o = ChargerObservation("2.0.1")
    started = {"eventType": "Started", "transactionInfo": {"transactionId": "T1"}, "evse": {"id": 2, "connectorId": 1}}
    assert o.apply("from_charger", "call", "TransactionEvent", "u", started, 1.0) == TX
    updated = {
        "eventType": "Updated", "transactionInfo": {"transactionId": "T1"},
        "meterValue": [{"timestamp": "x", "sampledValue": [
            {"value": 7.4, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "kW"}},
            {"value": 32, "measurand": "Current.Import", "unitOfMeasure": {"unit": "A"}}]}],
    }  # fmt: skip
    assert o.apply("from_charger", "call", "TransactionEvent", "u", updated, 2.0) == METER
    assert o.evses[2].power_w == 7400.0 and o.evses[2].phase_a == (32.0, 32.0, 32.0)
    ended = {"eventType": "Ended", "transactionInfo": {"transactionId": "T1"}}
    assert o.apply("from_charger", "call", "TransactionEvent", "u", ended, 3.0) == TX
    assert o.evses == {}


def test_csms_profile_changes_and_boots_mark_the_charger_dirty() -> None:
    o = ChargerObservation("1.6")
    assert o.apply("from_backend", "call", "ClearChargingProfile", "u", {}, 1.0) == DIRTY
    tx_default = {"connectorId": 1, "csChargingProfiles": {"chargingProfilePurpose": "TxDefaultProfile"}}
    assert o.apply("from_backend", "call", "SetChargingProfile", "u", tx_default, 1.0) == 0
    station = {"evseId": 0, "chargingProfile": {"chargingProfilePurpose": "ChargingStationMaxProfile"}}
    assert o.apply("from_backend", "call", "SetChargingProfile", "u", station, 1.0) == DIRTY
    assert o.apply("from_charger", "call", "BootNotification", "u", {}, 1.0) == DIRTY
    assert o.dirty == 3
    assert o.apply("from_charger", "call", "Heartbeat", "u", {}, 1.0) == 0


def test_an_observation_survives_its_stored_form() -> None:
    o = ChargerObservation("2.0.1", connected=True, node="n1", connected_at=5.0, dirty=2)
    o.apply("from_charger", "call", "TransactionEvent", "u", {"eventType": "Started", "transactionInfo": {
        "transactionId": "T"}, "evse": {"id": 1}}, 1.0)  # fmt: skip
    back = ChargerObservation.from_doc(o.doc())
    assert back.doc() == o.doc()


def test_meter_values_without_current_or_power_measure_nothing() -> None:
    assert measured([{"sampledValue": [{"value": "1", "measurand": "Energy.Active.Import.Register"}]}]) is None
    assert measured("nonsense") is None
    assert measured([{"sampledValue": [{"value": "x", "measurand": "Current.Import"}]}]) is None
    assert measured([{"sampledValue": [{"value": "-3", "measurand": "Current.Import", "phase": "L2"}]}]) == (
        (0.0, 0.0, 0.0), None)  # fmt: skip


# ----------------------------------------------------------------------------------------------- profiles


@pytest.mark.parametrize("version", ["1.6", "2.0.1", "2.1"])
@pytest.mark.parametrize("valid_to", [None, 1_700_000_120.0])
@pytest.mark.parametrize("unit", ["A", "W"])
def test_max_profiles_are_valid_for_the_chargers_version(version: str, valid_to: float | None, unit: str) -> None:
    action, payload = max_profile(version, profile_id=9001, stack_level=1, current_a=13.37, rate_unit=unit,
                                  now=1_700_000_000.0, valid_to=valid_to)  # fmt: skip
    schemas.validate(version, action, "request", payload)
    if version == "1.6":
        p = payload["csChargingProfiles"]
        assert payload["connectorId"] == 0 and p["chargingProfilePurpose"] == "ChargePointMaxProfile"
        period = p["chargingSchedule"]["chargingSchedulePeriod"][0]
    else:
        p = payload["chargingProfile"]
        assert payload["evseId"] == 0 and p["chargingProfilePurpose"] == "ChargingStationMaxProfile"
        assert p["chargingSchedule"][0]["id"] == 9001
        period = p["chargingSchedule"][0]["chargingSchedulePeriod"][0]
    assert period["limit"] == (13.3 if unit == "A" else 9225.0)
    assert ("validTo" in p) == (valid_to is not None)


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_composite_requests_are_valid(version: str) -> None:
    action, payload = composite_request(version)
    schemas.validate(version, action, "request", payload)


def test_composite_answers_give_the_limit_in_force_now() -> None:
    start = "2024-01-01T00:00:00Z"
    t0 = parse_time(start)
    assert t0 is not None
    a16 = {"status": "Accepted", "scheduleStart": start, "chargingSchedule": {"chargingRateUnit": "A",
           "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 32}, {"startPeriod": 60, "limit": 16}]}}  # fmt: skip
    assert composite_limit("1.6", a16, t0 + 10) == 32 and composite_limit("1.6", a16, t0 + 61) == 16
    assert composite_limit("1.6", a16, t0 - 5) == 32  # the charger's clock a little ahead of ours
    a201 = {"status": "Accepted", "schedule": {"evseId": 0, "duration": 300, "scheduleStart": start,
            "chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6900}]}}  # fmt: skip
    assert composite_limit("2.0.1", a201, t0) == pytest.approx(10.0)
    assert composite_limit("2.0.1", {"status": "Rejected"}, t0) is None
    assert composite_limit("1.6", {"status": "Accepted"}, t0) is None
    assert iso(t0) == start and parse_time("2024-01-01T00:00:00") is None


# ----------------------------------------------------------------------------------------------- events


def ev(body: Any, now: float = 1000.0) -> Event | str:
    return parse_event(body, unit="A", connection_limit=100, now=now, new_id="gen-1")


def test_an_event_with_a_duration_starts_now_and_gets_an_id() -> None:
    e = ev({"duration_s": 60, "limit": 40})
    assert isinstance(e, Event) and (e.id, e.start, e.end, e.limit, e.reduction) == ("gen-1", 1000, 1060, 40, None)


def test_an_event_window_in_iso_8601() -> None:
    e = ev({"id": "x", "start": "1970-01-01T00:20:00Z", "end": "1970-01-01T00:30:00+00:00", "reduction": 25})
    assert isinstance(e, Event) and (e.start, e.end, e.cap(100)) == (1200.0, 1800.0, 75.0)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ([], "the body must be a JSON object"),
        ({"duration_s": 1, "limit": 1, "x": 1}, "unknown field 'x'"),
        ({"id": "has space", "duration_s": 1, "limit": 1}, "id must be"),
        ({"start": "tomorrow", "duration_s": 1, "limit": 1}, "start must be an ISO 8601"),
        ({"end": 2000, "duration_s": 1, "limit": 1}, "give exactly one of end and duration_s"),
        ({"end": "soon", "limit": 1}, "end must be an ISO 8601"),
        ({"duration_s": 0, "limit": 1}, "duration_s must be a number > 0"),
        ({"start": 5000, "end": 4000, "limit": 1}, "end must be after start"),
        ({"end": 900, "limit": 1}, "end is in the past"),
        ({"duration_s": 8 * 86400, "limit": 1}, "the window may be at most 7 days"),
        ({"duration_s": 10}, "give exactly one of limit and reduction"),
        ({"duration_s": 10, "limit": -1}, "limit must be a number >= 0 (A)"),
        ({"duration_s": 10, "limit": True}, "limit must be a number >= 0 (A)"),
        ({"duration_s": 10, "reduction": 0}, "reduction must be a number > 0 (A)"),
        ({"duration_s": 10, "reduction": 101}, "reduction must be at most the site's limit (100 A)"),
        ({"duration_s": 10, "limit": 1, "unit": "kW"}, "unit must be the site's unit, 'A'"),
    ],
)
def test_bad_events_are_refused_with_the_reason(body: Any, why: str) -> None:
    got = ev(body)
    assert isinstance(got, str) and got.startswith(why), got


def test_the_lowest_active_event_wins_and_none_raises_the_limit() -> None:
    events = [
        Event("a", 0, 100, limit=60),
        Event("b", 50, 150, reduction=70),
        Event("c", 0, 100, limit=500),
        Event("later", 200, 300, limit=1),
    ]
    assert effective_limit(100, events, 10) == (60, ["a", "c"])
    assert effective_limit(100, events, 60) == (30, ["a", "b", "c"])
    assert effective_limit(100, events, 120) == (30, ["b"])
    assert effective_limit(100, events, 160) == (100, [])
    assert next_boundary(events, 60) == 100 and next_boundary(events, 300) is None


def test_an_event_survives_its_stored_form() -> None:
    e = Event("a", 1.0, 2.0, reduction=5.0, source="mqtt", created=0.5)
    assert Event.from_doc(e.doc()) == e
    assert Event.from_doc({"id": "x"}) is None


# ----------------------------------------------------------------------------------------------- meter


@pytest.mark.parametrize(
    ("payload", "unit", "reading"),
    [
        (b"41250", "W", Reading(power_w=41250.0)),
        (b"41.25", "kW", Reading(power_w=41250.0)),
        (b"60", "A", Reading(phase_a=(60.0, 60.0, 60.0))),
        (b'{"power_kw": 2}', "W", Reading(power_w=2000.0)),
        (b'{"current_a": [1, 2, 3], "power_w": 10}', "W", Reading(phase_a=(1.0, 2.0, 3.0), power_w=10.0)),
        (b'{"current_a": 7}', "W", Reading(phase_a=(7.0, 7.0, 7.0))),
        (b"-5", "W", Reading(power_w=0.0)),
    ],
)
def test_meter_payloads(payload: bytes, unit: str, reading: Reading) -> None:
    assert parse_reading(payload, unit) == reading


@pytest.mark.parametrize("payload", [b"", b"abc", b"[1,2]", b'{"voltage": 230}', b'{"current_a": [1, 2]}',
                                     b'{"power_w": "x"}', b"true"])  # fmt: skip
def test_bad_meter_payloads_say_why(payload: bytes) -> None:
    assert isinstance(parse_reading(payload, "W"), str)


def test_the_reference_config_documents_every_site_key() -> None:
    from pathlib import Path

    from gateway.sites import config as site_config

    text = (Path(__file__).resolve().parents[2] / "config" / "gateway.yaml").read_text(encoding="utf-8")
    block = text[text.index("# sites:") :]
    nested = {"topic", "unit", "max_age_s", "current_a", "validity_s", "id", "stack_level", "fail_safe_id",
              "fail_safe_stack_level"}  # fmt: skip
    for key in sorted(site_config._SITE_KEYS | site_config._SPEC_KEYS | nested):
        assert f"#     {key}:" in block or f"#       {key}:" in block, key
