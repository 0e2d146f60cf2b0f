"""The session with a quirk hook (gateway/core/quirks.py), over the in-memory pair: repairs before the schema check
and the translation, in both directions, frames no rule names forwarded byte for byte, violations counted by model,
sampling in a session that does not validate, and the BootNotification that switches a profile on."""

from __future__ import annotations

from typing import Any

from gateway.core.quirks import SessionQuirks
from gateway.core.repair import Repairs
from gateway.quirks import parse_quirks
from tests.unit.session_pair import T0, SessionPair


def profile(*rules: dict[str, Any], ocpp: str = "1.6") -> Repairs:
    config, problems = parse_quirks({"profiles": [{"name": "acme", "ocpp": ocpp, "match": {"charger_id": "*"},
                                                   "rules": list(rules)}]})  # fmt: skip
    assert problems == []
    return Repairs(config.profiles[0], backend_rules=True)


STATUS_CASE = {"name": "status-case", "action": "StatusNotification", "direction": "from_charger",
               "message": "call", "path": "$.status", "repair": "enum_case"}  # fmt: skip
INTERVAL = {"name": "interval", "action": "BootNotification", "direction": "from_backend", "message": "callresult",
            "path": "$.interval", "repair": "coerce"}  # fmt: skip
ANSWER_CASE = {"name": "answer-case", "action": "RemoteStartTransaction", "direction": "from_charger",
               "message": "callresult", "path": "$.status", "repair": "enum_case"}  # fmt: skip


class Counts:
    def __init__(self) -> None:
        self.fields: dict[tuple[str, ...], int] = {}

    def __call__(self, key: tuple[str, ...], n: int) -> None:
        self.fields[key] = self.fields.get(key, 0) + n


def hooked(pair: SessionPair, repairs: Repairs | None, *, sample_every: int = 0) -> Counts:
    counts = Counts()
    s = pair.session
    s.quirks = SessionQuirks(repairs=repairs, model="ACME/X1", version=s.version, metrics=pair.metrics, sink=counts,
                             validating=s.validate or s.relay is not None, sample_every=sample_every)  # fmt: skip
    return counts


def test_a_repaired_call_reaches_the_backend_serialised_anew_and_counted() -> None:
    pair = SessionPair("1.6", validate=True)
    counts = hooked(pair, profile(STATUS_CASE))
    pair.charger_sends([2, "1", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "charging"}])
    pair.assert_to_backend([2, "1", "StatusNotification", {"connectorId": 1, "errorCode": "NoError",
                                                           "status": "Charging"}])  # fmt: skip
    assert pair.counter("ocppgw_quirk_repairs_total", profile="acme", rule="status-case") == 1
    assert pair.counter("ocppgw_schema_violations_total", model="ACME/X1", action="StatusNotification",
                        outcome="repaired") == 1  # fmt: skip
    key = ("1.6", "acme", "status-case", "from_charger", "call", "StatusNotification", "$.status", "enum_case")
    assert counts.fields == {("r", *key): 1, ("f", *key): 1}
    assert pair.session.quirks is not None and pair.session.quirks.take_checked() == 1


def test_without_the_profile_the_same_call_is_refused_and_counted_unrepaired() -> None:
    pair = SessionPair("1.6", validate=True)
    counts = hooked(pair, None)
    pair.charger_sends([2, "1", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "charging"}])
    pair.assert_error_to_charger("1", "PropertyConstraintViolation")
    pair.assert_to_backend()
    assert pair.counter("ocppgw_schema_violations_total", model="ACME/X1", action="StatusNotification",
                        outcome="unrepaired") == 1  # fmt: skip
    assert counts.fields == {
        ("v", "1.6", "from_charger", "call", "StatusNotification", "$.status", "enum", "enum_case", ""): 1
    }


def test_frames_no_rule_changes_are_forwarded_byte_for_byte() -> None:
    pair = SessionPair("1.6")
    hooked(pair, profile(STATUS_CASE))
    heartbeat = b'[2, "h1", "Heartbeat", {}]'
    conforming = b'[2,"s1","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Charging"}]'
    pair.charger_sends(heartbeat)
    assert pair.backend.raw[-1] is heartbeat
    pair.backend_answers({"currentTime": T0})
    pair.charger_sends(conforming)
    assert pair.backend.raw[-1] is conforming


def test_a_csms_answer_is_adapted_toward_the_charger() -> None:
    pair = SessionPair("1.6", validate=True)
    hooked(pair, profile(INTERVAL))
    pair.charger_sends([2, "b1", "BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "X1"}])
    pair.backend_sends([3, "b1", {"status": "Accepted", "currentTime": T0, "interval": "300"}])
    pair.assert_to_charger([3, "b1", {"status": "Accepted", "currentTime": T0, "interval": 300}])
    assert pair.counter("ocppgw_frame_errors_total", side="backend", kind="schema_result") == 0
    # the CSMS's violation is not the charger's: no model counts it
    assert pair.counter("ocppgw_schema_violations_total", model="ACME/X1", action="BootNotification",
                        outcome="repaired") == 0  # fmt: skip


def test_a_charger_answer_is_repaired_before_it_reaches_the_csms() -> None:
    pair = SessionPair("1.6")
    hooked(pair, profile(ANSWER_CASE))
    pair.backend_sends([2, "r1", "RemoteStartTransaction", {"idTag": "T"}])
    pair.charger_answers({"status": "accepted"})
    pair.assert_to_backend([3, "r1", {"status": "Accepted"}])


def test_a_translated_charger_is_repaired_before_translation() -> None:
    quirky = {"connectorId": 1, "errorCode": "NoError", "status": "charging"}
    plain = SessionPair("1.6", "2.0.1")
    plain.charger_sends([2, "1", "StatusNotification", quirky])
    plain.assert_error_to_charger("1", "PropertyConstraintViolation")  # the translator only sees valid 1.6
    pair = SessionPair("1.6", "2.0.1")
    counts = hooked(pair, profile(STATUS_CASE))
    pair.charger_sends([2, "1", "StatusNotification", dict(quirky)])
    (to_csms,) = pair.backend.unread()
    assert to_csms[2] == "StatusNotification" and to_csms[3]["connectorStatus"] == "Occupied"
    assert (
        "f",
        "1.6",
        "acme",
        "status-case",
        "from_charger",
        "call",
        "StatusNotification",
        "$.status",
        "enum_case",
    ) in (counts.fields)


def test_a_session_that_does_not_validate_samples_for_counting_only() -> None:
    pair = SessionPair("1.6")
    counts = hooked(pair, None, sample_every=2)
    quirky = [2, "1", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "charging"}]
    pair.charger_sends(quirky)  # not sampled
    pair.assert_to_backend(quirky)
    pair.backend_answers({})
    pair.charger.unread()
    quirky2 = [2, "2", "StatusNotification", quirky[3]]
    pair.charger_sends(quirky2)  # sampled: counted, forwarded all the same
    pair.assert_to_backend(quirky2)
    assert counts.fields == {
        ("v", "1.6", "from_charger", "call", "StatusNotification", "$.status", "enum", "enum_case", ""): 1
    }
    assert pair.session.quirks is not None and pair.session.quirks.take_checked() == 1


def test_a_boot_can_switch_the_profile_on_for_itself() -> None:
    pair = SessionPair("1.6")
    seen: list[dict[str, Any]] = []
    serial = {"name": "serial", "action": "BootNotification", "direction": "from_charger", "message": "call",
              "path": "$.chargePointSerialNumber", "repair": "truncate"}  # fmt: skip

    def on_boot(payload: dict[str, Any]) -> None:
        seen.append(dict(payload))
        hooked(pair, profile(serial))

    pair.session.on_boot = on_boot
    boot = {"chargePointVendor": "ACME", "chargePointModel": "X1", "chargePointSerialNumber": "S" * 30}
    pair.charger_sends([2, "b1", "BootNotification", boot])
    assert seen == [boot]  # as it came
    pair.assert_to_backend([2, "b1", "BootNotification", {**boot, "chargePointSerialNumber": "S" * 25}])


def test_an_invalid_charger_answer_no_rule_repairs_is_counted_for_its_model() -> None:
    pair = SessionPair("1.6", validate=True)
    counts = hooked(pair, None)
    pair.backend_sends([2, "r1", "RemoteStartTransaction", {"idTag": "T"}])
    pair.charger_answers({"status": "accepted"})
    pair.assert_to_backend([3, "r1", {"status": "accepted"}])  # an answer is counted and forwarded, never refused
    assert pair.counter("ocppgw_frame_errors_total", side="charger", kind="schema_result") == 1
    assert [k for k in counts.fields if k[0] == "v"] == [
        ("v", "1.6", "from_charger", "callresult", "RemoteStartTransaction", "$.status", "enum", "enum_case", "")
    ]


def test_a_repaired_call_nested_deeper_than_orjson_writes_goes_on_as_it_came() -> None:
    # orjson reads 1024 levels and writes 254: the repair cannot be serialised, and nothing may raise
    pair = SessionPair("1.6")
    hooked(pair, profile(STATUS_CASE))
    deep = "[" * 300 + "]" * 300
    text = ('[2,"1","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"charging","info":"x",'
            f'"vendorErrorCode":"e","x":{deep}}}]').encode()  # fmt: skip
    pair.charger_sends(text)
    assert pair.backend.raw[-1] is text
