"""The OCPP-J codec: every bad shape is a typed FrameError with the right code per version; any text is safe."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.ocpp.errors import V16_CODES, V21_CODES, V201_CODES, ErrorKind, FrameError, codes_of, normalise_code
from gateway.ocpp.frames import (
    Call,
    CallError,
    CallResult,
    CallResultError,
    MessageType,
    Send,
    call_error_text,
    call_result_error_text,
    call_result_text,
    call_text,
    parse_frame,
    send_text,
)


def test_call_is_parsed_and_keeps_its_original_text() -> None:
    text = '[2, "abc",  "Heartbeat", {}]'
    frame = parse_frame(text)
    assert frame == Call("abc", "Heartbeat", {}, text)
    assert frame.raw is text


def test_callresult_and_callerror_are_parsed() -> None:
    assert parse_frame('[3,"1",{"currentTime":"x"}]') == CallResult(
        "1", {"currentTime": "x"}, '[3,"1",{"currentTime":"x"}]'
    )
    err = parse_frame('[4,"1","NotImplemented","nope",{}]')
    assert isinstance(err, CallError) and err.code == "NotImplemented" and err.details == {}


def test_v21_send_and_callresulterror_are_parsed_and_keep_their_text() -> None:
    text = b'[6,"s1","NotifyPeriodicEventStream",{"id":1,"pending":0,"basetime":"x","data":[]}]'
    frame = parse_frame(text)
    assert frame == Send("s1", "NotifyPeriodicEventStream", {"id": 1, "pending": 0, "basetime": "x", "data": []}, text)
    assert frame.raw is text
    err = parse_frame('[5,"c1","FormatViolation","tariff unreadable",{"at":"$.tariff"}]')
    assert err == CallResultError("c1", "FormatViolation", "tariff unreadable", {"at": "$.tariff"}, err.raw)
    assert parse_frame('[5,"c2","InternalError","no details"]') == CallResultError(
        "c2", "InternalError", "no details", {}, '[5,"c2","InternalError","no details"]'
    )
    assert (MessageType.CALLRESULTERROR, MessageType.SEND) == (5, 6)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ('[6, "s1", "NotifyPeriodicEventStream"]', ErrorKind.BAD_SHAPE),
        ('[6, "s2", 17, {}]', ErrorKind.BAD_SHAPE),
        ('[6, "s3", "", {}]', ErrorKind.BAD_SHAPE),
        ('[6, "s4", "NotifyPeriodicEventStream", [1]]', ErrorKind.PAYLOAD_NOT_OBJECT),
        ('[5, "c1", "GenericError"]', ErrorKind.BAD_SHAPE),
        ('[5, "c2", 1, "d", {}]', ErrorKind.BAD_SHAPE),
        ('[5, "c3", "GenericError", "d", []]', ErrorKind.BAD_SHAPE),
    ],
)
def test_a_malformed_send_or_callresulterror_is_never_answered(text: str, kind: ErrorKind) -> None:
    # neither frame type ever gets an answer, so a malformed one is refused without a CALLERROR
    with pytest.raises(FrameError) as info:
        parse_frame(text)
    assert info.value.kind is kind
    assert info.value.unique_id is not None and not info.value.is_call


BAD = [
    # text, kind, readable unique id, code 1.6, code 2.0.1
    ('[2,"u1","Heartbeat",{}', ErrorKind.INVALID_JSON, "u1", "FormationViolation", "RpcFrameworkError"),
    ("not json at all", ErrorKind.INVALID_JSON, None, "FormationViolation", "RpcFrameworkError"),
    ('{"a": 1}', ErrorKind.NOT_ARRAY, None, "ProtocolError", "RpcFrameworkError"),
    ("[]", ErrorKind.NOT_ARRAY, None, "ProtocolError", "RpcFrameworkError"),
    ('[2, 17, "Heartbeat", {}]', ErrorKind.BAD_UNIQUE_ID, None, "ProtocolError", "RpcFrameworkError"),
    ('[2, "' + "x" * 37 + '", "Heartbeat", {}]', ErrorKind.BAD_UNIQUE_ID, None, "ProtocolError", "RpcFrameworkError"),
    ('[2, "", "Heartbeat", {}]', ErrorKind.BAD_UNIQUE_ID, None, "ProtocolError", "RpcFrameworkError"),
    ('[2, "u2", "Heartbeat"]', ErrorKind.BAD_SHAPE, "u2", "ProtocolError", "RpcFrameworkError"),
    ('[2, "u3", 5, {}]', ErrorKind.BAD_ACTION, "u3", "ProtocolError", "RpcFrameworkError"),
    ('[2, "u4", "Heartbeat", []]', ErrorKind.PAYLOAD_NOT_OBJECT, "u4", "FormationViolation", "FormatViolation"),
    ('[7, "u5", "Heartbeat", {}]', ErrorKind.UNKNOWN_MESSAGE_TYPE, "u5", "ProtocolError", "MessageTypeNotSupported"),
    ('["2", "u6", "Heartbeat", {}]', ErrorKind.BAD_MESSAGE_TYPE, "u6", "ProtocolError", "RpcFrameworkError"),
]


@pytest.mark.parametrize(("text", "kind", "uid", "code16", "code201"), BAD)
def test_malformed_frames_raise_typed_errors_with_version_codes(
    text: str, kind: ErrorKind, uid: str | None, code16: str, code201: str
) -> None:
    with pytest.raises(FrameError) as info:
        parse_frame(text)
    assert info.value.kind is kind
    assert info.value.unique_id == uid
    assert info.value.code("1.6") == code16
    assert info.value.code("2.0.1") == code201


def test_a_malformed_result_is_not_answered() -> None:
    with pytest.raises(FrameError) as info:
        parse_frame('[3, "u1"]')
    assert info.value.unique_id == "u1" and not info.value.is_call


@given(st.text(max_size=200))
def test_any_text_gives_a_frame_or_a_frame_error(text: str) -> None:
    try:
        parse_frame(text)
    except FrameError:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)


@given(st.lists(json_values, max_size=6))
def test_any_json_array_gives_a_frame_or_a_frame_error(items: list[object]) -> None:
    try:
        parse_frame(orjson.dumps(items).decode())
    except FrameError:
        pass


@given(
    st.text(min_size=1, max_size=36),
    st.sampled_from(["Heartbeat", "MeterValues"]),
    st.dictionaries(st.text(max_size=10), st.integers(-(2**53), 2**53) | st.text(max_size=10), max_size=5),
)
def test_serialised_frames_round_trip(uid: str, action: str, payload: dict[str, object]) -> None:
    call = parse_frame(call_text(uid, action, payload))
    assert isinstance(call, Call) and (call.unique_id, call.action, call.payload) == (uid, action, payload)
    res = parse_frame(call_result_text(uid, payload))
    assert isinstance(res, CallResult) and res.payload == payload
    err = parse_frame(call_error_text(uid, "GenericError", "d"))
    assert isinstance(err, CallError) and err.code == "GenericError"
    send = parse_frame(send_text(uid, action, payload))
    assert isinstance(send, Send) and (send.unique_id, send.action, send.payload) == (uid, action, payload)
    refused = parse_frame(call_result_error_text(uid, "FormatViolation", "d" * 300, {"n": 1}))
    assert isinstance(refused, CallResultError)
    assert (refused.code, refused.description, refused.details) == ("FormatViolation", "d" * 255, {"n": 1})


@given(
    st.sampled_from([2, 3, 4, 5, 6, 7]),
    st.text(max_size=40) | st.integers(-(2**53), 2**53),
    st.lists(json_values, max_size=4),
)
def test_any_frame_of_any_message_type_gives_a_frame_or_a_frame_error(mt: int, uid: object, rest: list[object]) -> None:
    # every message type OCPP-J names (2..6), and one it does not, with any elements after the header
    try:
        frame = parse_frame(orjson.dumps([mt, uid, *rest]))
    except FrameError as e:
        assert e.kind in ErrorKind
        if mt in (3, 4, 5, 6):
            assert not e.is_call  # answers, CALLRESULTERRORs and SENDs are never answered
        return
    expected = {2: Call, 3: CallResult, 4: CallError, 5: CallResultError, 6: Send}[mt]
    assert type(frame) is expected and frame.unique_id == uid


def test_error_codes_are_spelled_per_version_and_both_occurrence_spellings_accepted() -> None:
    assert normalise_code("OccurrenceConstraintViolation", "1.6") == "OccurenceConstraintViolation"
    assert normalise_code("OccurenceConstraintViolation", "2.0.1") == "OccurrenceConstraintViolation"
    assert normalise_code("FormatViolation", "1.6") == "FormationViolation"
    assert normalise_code("FormationViolation", "2.0.1") == "FormatViolation"
    assert normalise_code("RpcFrameworkError", "1.6") == "ProtocolError"
    assert normalise_code("MadeUp", "2.0.1") == "GenericError"


def test_v21_codes_are_v201s_and_spelled_as_in_v201() -> None:
    # OCPP 2.1 Part 4 keeps 2.0.1's twelve codes (gateway/ocpp/errors.py); 2.1 is not the 1.6 family
    assert codes_of("2.1") == V21_CODES == V201_CODES
    assert codes_of("2.0") == V201_CODES and codes_of("1.6") == V16_CODES
    assert normalise_code("OccurenceConstraintViolation", "2.1") == "OccurrenceConstraintViolation"
    assert normalise_code("FormationViolation", "2.1") == "FormatViolation"
    assert normalise_code("MessageTypeNotSupported", "2.1") == "MessageTypeNotSupported"
    assert normalise_code("RpcFrameworkError", "2.1") == "RpcFrameworkError"
    assert normalise_code("MadeUp", "2.1") == "GenericError"
    assert FrameError(ErrorKind.UNKNOWN_MESSAGE_TYPE, "x", "u").code("2.1") == "MessageTypeNotSupported"
