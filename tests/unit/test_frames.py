"""The OCPP-J codec: every bad shape is a typed FrameError with the right code per version; any text is safe."""

from __future__ import annotations

import json

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
    Raw,
    Send,
    call_error_text,
    call_result_error_text,
    call_result_text,
    call_text,
    has_duplicate_keys,
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


@pytest.mark.parametrize(("text", "kind"), [('[4,"c2","InternalError","no details"]', CallError),
                                            (b'[5,"c2","InternalError","no details"]', CallResultError)])  # fmt: skip
def test_an_error_frame_without_its_details_is_read_and_goes_on_with_them(text: Raw, kind: type) -> None:
    # OCPP-J requires the ErrorDetails object: what is forwarded (raw) is the five-element frame, as bytes or str
    frame = parse_frame(text)
    assert type(frame) is kind and frame.details == {}
    mt = b"4" if kind is CallError else b"5"
    expected = b"[" + mt + b',"c2","InternalError","no details",{}]'
    assert frame.raw == (expected if isinstance(text, bytes) else expected.decode())


def test_v21_send_and_callresulterror_are_parsed_and_keep_their_text() -> None:
    text = b'[6,"s1","NotifyPeriodicEventStream",{"id":1,"pending":0,"basetime":"x","data":[]}]'
    frame = parse_frame(text)
    assert frame == Send("s1", "NotifyPeriodicEventStream", {"id": 1, "pending": 0, "basetime": "x", "data": []}, text)
    assert frame.raw is text
    err = parse_frame('[5,"c1","FormatViolation","tariff unreadable",{"at":"$.tariff"}]')
    assert err == CallResultError("c1", "FormatViolation", "tariff unreadable", {"at": "$.tariff"}, err.raw)
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
    (
        '[2, "' + "x" * 37 + '", "Heartbeat", {}]',
        ErrorKind.BAD_UNIQUE_ID,
        "x" * 37,
        "ProtocolError",
        "RpcFrameworkError",
    ),
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


LONG_ID = "x" * 37


@pytest.mark.parametrize(("version", "answer_id"), [("1.6", "-1"), ("2.0", "-1"), ("2.0.1", "-1"), ("2.1", "-1")])
def test_a_call_with_a_unique_id_over_36_characters_is_answered_per_version(version: str, answer_id: str) -> None:
    # an id that cannot be used is answered with "-1" (OCPP 2.0.1 Part 4 §4.2.3); 1.6 names no such id, but its own
    # id back (over 36 characters) would be a frame strict peers reject
    with pytest.raises(FrameError) as info:
        parse_frame(f'[2,"{LONG_ID}","Heartbeat",{{}}]')
    assert info.value.kind is ErrorKind.BAD_UNIQUE_ID
    assert info.value.answer_id(version) == answer_id


@pytest.mark.parametrize("text", ['[2, 17, "Heartbeat", {}]', '[2, "", "Heartbeat", {}]', '[2, null, "Heartbeat", {}]'])
@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_a_call_without_a_string_unique_id_cannot_be_answered(text: str, version: str) -> None:
    with pytest.raises(FrameError) as info:
        parse_frame(text)
    assert info.value.answer_id(version) is None


def test_a_long_unique_id_on_an_answer_is_not_answered() -> None:
    with pytest.raises(FrameError) as info:
        parse_frame(f'[3,"{LONG_ID}",{{}}]')
    assert info.value.answer_id("1.6") is None and info.value.answer_id("2.0.1") is None


@pytest.mark.parametrize(
    "text",
    [
        b'[2,"u1","Heartbeat",{"x":"\xff"}]',  # not UTF-8 at all
        b'[2,"u1","Heartbeat",{"x":"\xed\xa0\x80"}]',  # an encoded surrogate
        b'[2,"u1","Heartbeat",{"x":"\xc3"}]',  # a sequence cut short
        '[2,"u1","Heartbeat",{"x":"\ud800"}]',  # str with a lone surrogate (cannot be encoded)
    ],
)
def test_invalid_utf8_is_its_own_kind_and_fails_the_connection_with_1007(text: bytes | str) -> None:
    with pytest.raises(FrameError) as info:
        parse_frame(text)
    assert info.value.kind is ErrorKind.INVALID_UTF8
    assert info.value.close_code == 1007
    assert info.value.answer_id("1.6") is None and info.value.answer_id("2.0.1") is None


def test_invalid_json_in_valid_utf8_is_answered_not_closed() -> None:
    with pytest.raises(FrameError) as info:
        parse_frame('[2,"u1","Heartbeat",{"x":"é"}'.encode())
    assert info.value.kind is ErrorKind.INVALID_JSON
    assert info.value.close_code is None and info.value.answer_id("1.6") == "u1"


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


DUPLICATES = [
    '[2,"u","StatusNotification",{"status":"A","status":"B"}]',
    '[2,"u","MeterValues",{"meterValue":[{"sampledValue":[{"value":"1","value":"2"}]}]}]',
    '[3,"u",{"idTagInfo":{"status":"Accepted","status":"Blocked"}}]',
    '[2, "u" , "X" , { "status" : "A" ,\n "status"\t:  "B" }]',  # whitespace around the colons
    '[2,"u","X",{"status":"A","st\\u0061tus":"B"}]',  # the same key, once escaped (slow path)
    '[2,"u","X",{"t":"12:00:00","t":"13:00:00"}]',  # colons in the values of both
    '[2,"u:1","X:y",{"a":1,"a":2}]',  # colons in the unique id and action
    '[2,"u","X",{"a":' + "[" * 600 + '{"b":1,"b":2}' + "]" * 600 + "}]",  # deeper than orjson writes (slow path)
]
UNIQUE = [
    '[2,"u","StatusNotification",{"connectorId":1,"status":"Available","errorCode":"NoError"}]',
    '[2,"u","X",{"k":["a",":"],"t":"2025-01-01T12:00:00Z"}]',  # a ':' string after a string in a list
    '[2,"u","X",{"a:b":"c:d","e":"f\\":g"}]',  # colons inside keys and values, an escaped quote before one
    '[2,"u","X",{"n":"caf\\u00e9","m":"\\u003a"}]',  # \\u escapes (slow path), one of them a colon
    '[2,"u","X",{"url":"http:\\/\\/x\\/y","a":{"a":{"a":1}}}]',  # the same key at different depths
    '[3,"u:1",{}]',
    '[2,"u","X",{"a":' + "[" * 600 + '{"b":1,"c":2}' + "]" * 600 + "}]",  # deeper than orjson writes
]


@pytest.mark.parametrize("text", DUPLICATES)
def test_a_key_given_twice_in_any_object_is_found(text: str) -> None:
    for raw in (text, text.encode()):
        frame = parse_frame(raw)
        assert isinstance(frame, Call | CallResult)
        assert has_duplicate_keys(frame), raw


@pytest.mark.parametrize("text", UNIQUE)
def test_frames_without_a_repeated_key_are_not_flagged(text: str) -> None:
    for raw in (text, text.encode()):
        frame = parse_frame(raw)
        assert isinstance(frame, Call | CallResult)
        assert not has_duplicate_keys(frame), raw


# JSON objects written as lists of pairs, so that a key can be given twice
pairs_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(alphabet='ab:"\\é\u2028 ', max_size=6),
    lambda children: (
        st.lists(children, max_size=3).map(lambda xs: ("list", xs))
        | st.lists(st.tuples(st.sampled_from(["a", "b", "a:", 'q"', "é", "\\"]), children), max_size=3).map(
            lambda ps: ("object", ps)
        )
    ),
    max_leaves=12,
)


def _write(value: object, ascii_only: bool, sep: str) -> str:
    """JSON text of a ``pairs_values`` value, keys in the order given (repeats kept), escapes as chosen."""
    if isinstance(value, tuple) and value[0] == "list":
        return "[" + ("," + sep).join(_write(v, ascii_only, sep) for v in value[1]) + "]"
    if isinstance(value, tuple) and value[0] == "object":
        items = (
            json.dumps(k, ensure_ascii=ascii_only) + sep + ":" + sep + _write(v, ascii_only, sep) for k, v in value[1]
        )
        return "{" + ",".join(items) + "}"
    return json.dumps(value, ensure_ascii=ascii_only)


def _repeats(value: object) -> bool:
    if isinstance(value, tuple) and value[0] == "list":
        return any(_repeats(v) for v in value[1])
    if isinstance(value, tuple) and value[0] == "object":
        keys = [k for k, _ in value[1]]
        return len(set(keys)) != len(keys) or any(_repeats(v) for _, v in value[1])
    return False


@given(
    st.lists(st.tuples(st.sampled_from(["a", "b", "c:", "é"]), pairs_values), max_size=4),
    st.booleans(),
    st.sampled_from(["", " ", "\n\t"]),
)
def test_duplicate_keys_are_found_exactly_whatever_the_escapes_and_whitespace(
    pairs: list[tuple[str, object]], ascii_only: bool, sep: str
) -> None:
    payload = ("object", pairs)
    raw = f'[2,"u1","DataTransfer",{_write(payload, ascii_only, sep)}]'.encode()
    frame = parse_frame(raw)
    assert isinstance(frame, Call)
    assert has_duplicate_keys(frame) == _repeats(payload)
