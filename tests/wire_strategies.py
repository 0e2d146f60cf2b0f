"""Hypothesis strategies for what a charger can put in a text frame: valid CALLs of real actions with payloads drawn
from the official schemas (read from the `ocpp` package's data files, not through the gateway), and every kind of
broken frame. Frames are ``bytes`` as sent on the wire; :func:`expectation` says, from the bytes alone, what answer
OCPP-J (and the gateway's README) promises for one.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import ocpp
from hypothesis import strategies as st

SCHEMAS = {
    "1.6": Path(ocpp.__file__).parent / "v16" / "schemas",
    "2.0.1": Path(ocpp.__file__).parent / "v201" / "schemas",
}

#: CALLs a charger sends, and a few of the other direction (a charger sending them is refused, never forwarded wrong)
ACTIONS = {
    "1.6": [
        "Authorize",
        "BootNotification",
        "DataTransfer",
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "MeterValues",
        "StartTransaction",
        "StatusNotification",
        "StopTransaction",
        "LogStatusNotification",
        "SecurityEventNotification",
        "SignCertificate",
        "SignedFirmwareStatusNotification",
        "Reset",
        "GetConfiguration",
    ],
    "2.0.1": [
        "Authorize",
        "BootNotification",
        "ClearedChargingLimit",
        "DataTransfer",
        "FirmwareStatusNotification",
        "Heartbeat",
        "LogStatusNotification",
        "MeterValues",
        "NotifyChargingLimit",
        "NotifyEVChargingNeeds",
        "NotifyEvent",
        "NotifyReport",
        "ReportChargingProfiles",
        "ReservationStatusUpdate",
        "SecurityEventNotification",
        "SignCertificate",
        "StatusNotification",
        "TransactionEvent",
        "Reset",
        "GetVariables",
    ],
}

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
#: unique ids written as they are in JSON text (printable ASCII, no quote or backslash): readable in a broken frame
PLAIN_IDS = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\'), min_size=1, max_size=36
)
IDS = st.text(st.characters(codec="utf-8"), min_size=1, max_size=36)
TIMESTAMPS = st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)).map(
    lambda d: d.isoformat(timespec="milliseconds").replace("+00:00", "Z")
)


# ------------------------------------------------------------------------------------------- schema -> payloads


def _from_schema(node: dict[str, Any], root: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Valid instances of the OCPP schemas' subset of JSON schema (draft-04/06: $ref, enum, bounds, multipleOf)."""
    if "$ref" in node:
        return _from_schema(root["definitions"][node["$ref"].rsplit("/", 1)[1]], root)
    if "enum" in node:
        return st.sampled_from(node["enum"])
    kind = node.get("type")
    if kind == "object":
        props = node.get("properties", {})
        required = set(node.get("required", []))
        return st.fixed_dictionaries(
            {k: _from_schema(v, root) for k, v in props.items() if k in required},
            optional={k: _from_schema(v, root) for k, v in props.items() if k not in required},
        )
    if kind == "array":
        low = node.get("minItems", 0)
        return st.lists(_from_schema(node["items"], root), min_size=low, max_size=min(node.get("maxItems", 3), low + 2))
    if kind == "string":
        if node.get("format") == "date-time":
            return TIMESTAMPS
        return st.text(max_size=min(node.get("maxLength", 30), 30))
    if kind == "integer":
        return st.integers(node.get("minimum", -(2**31)), node.get("maximum", 2**31))
    if kind == "number":
        step = node.get("multipleOf")
        if step is not None:
            return st.integers(0, 10_000).map(lambda i: round(i * step, 6))
        return st.floats(node.get("minimum", -1e9), node.get("maximum", 1e9), allow_nan=False) | st.integers(0, 10**6)
    if kind == "boolean":
        return st.booleans()
    return JSON


@functools.cache
def payloads(version: str, action: str) -> st.SearchStrategy[dict[str, Any]]:
    """Payloads of ``action``'s request that its official schema accepts."""
    name = f"{action}.json" if version == "1.6" else f"{action}Request.json"
    schema = json.loads((SCHEMAS[version] / name).read_text())
    return _from_schema(schema, schema)


@st.composite
def valid_calls(draw: st.DrawFn, version: str, ids: st.SearchStrategy[str] = IDS) -> list[Any]:
    action = draw(st.sampled_from(ACTIONS[version]))
    return [2, draw(ids), action, draw(payloads(version, action))]


# ------------------------------------------------------------------------------------------------ frames


def dumps(frame: Any, draw: st.DrawFn) -> bytes:
    ascii_, spaced = draw(st.booleans()), draw(st.booleans())
    return json.dumps(frame, ensure_ascii=ascii_, separators=(", ", ": ") if spaced else (",", ":")).encode()


def _with_field(call: list[Any], value_text: str) -> bytes:
    """``call`` (a valid CALL) as text with one more payload field whose value is ``value_text`` as written."""
    payload = json.dumps(call[3], separators=(",", ":"))
    field = f'"zz":{value_text}'
    body = "{" + field + "}" if payload == "{}" else "{" + field + "," + payload[1:]
    return f"[2,{json.dumps(call[1])},{json.dumps(call[2])},{body}]".encode()


HUGE_NUMBERS = [
    "1e400", "-1e400", "1e308", "-1.7976931348623157e308", "1" + "0" * 30, "-" + "9" * 40, "1" + "0" * 400, "1e40",
    "18446744073709551616", "18446744073709551615", "9223372036854775808", "-9223372036854775809", "9007199254740993",
    "1e-400",
]  # fmt: skip


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in _leaves(v, (*path, k))]
    if isinstance(node, list):
        return [leaf for i, v in enumerate(node) for leaf in _leaves(v, (*path, i))]
    return [(path, node)]


def _huge_in_a_field(call: list[Any], draw: st.DrawFn) -> bytes | None:
    """``call`` with one of its numbers (or a decimal string, as 1.6 meter values are) made huge."""
    fields = [(p, v) for p, v in _leaves(call[3]) if p and (type(v) in (int, float) or p[-1] == "value")]
    if not fields:
        return None
    path, value = draw(st.sampled_from(fields))
    token = draw(st.sampled_from(HUGE_NUMBERS))
    node = call[3]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = "@@HUGE@@"
    text = json.dumps(call).encode()
    return text.replace(b'"@@HUGE@@"', token.encode() if type(value) is not str else json.dumps(token).encode())


@st.composite
def frames(draw: st.DrawFn, version: str) -> bytes:
    """One text frame: a valid CALL, or a CALL broken in one way."""
    how = draw(
        st.sampled_from(
            [
                "valid", "valid", "valid", "valid", "bad_id", "long_id", "bad_type", "length", "bad_action",
                "bad_payload", "confused_payload", "answer", "not_array", "broken_json", "huge_number", "huge_number",
                "deep", "duplicate_keys", "non_utf8", "surrogate", "constants", "whitespace", "big",
            ]
        )
    )  # fmt: skip
    plain = how in ("broken_json", "constants", "non_utf8") or draw(st.booleans())
    call = draw(valid_calls(version, PLAIN_IDS if plain else IDS))
    if how == "valid":
        return dumps(call, draw)
    if how == "bad_id":
        call[1] = draw(
            st.sampled_from(["", None, 0, 17, 1.5, True, [], {}, ["x"]]) | JSON.filter(lambda v: type(v) is not str)
        )
    elif how == "long_id":
        call[1] = draw(st.text(st.characters(codec="utf-8"), min_size=37, max_size=200))
    elif how == "bad_type":
        call[0] = draw(st.sampled_from([0, 1, 5, 6, 7, -1, 99, 2.0, "2", True, None, [2], {}]) | st.integers())
    elif how == "length":
        extra = draw(st.lists(JSON, min_size=1, max_size=2))
        call = draw(st.sampled_from([call[:1], call[:2], call[:3], call + extra]))
    elif how == "bad_action":
        call[2] = draw(st.sampled_from(["", "X" * 65, "NoSuchAction", 3, None, {}, []]) | JSON)
    elif how == "bad_payload":
        call[3] = draw(JSON.filter(lambda v: type(v) is not dict))
    elif how == "confused_payload":
        key = draw(st.sampled_from(sorted(call[3]) or ["any"]) | st.text(max_size=8))
        call[3] = {**call[3], key: draw(JSON)}
    elif how == "answer":  # CALLRESULT or CALLERROR for a CALL nobody sent
        details = draw(st.sampled_from([[], [{}], [draw(JSON)]]))
        call = draw(st.sampled_from([[3, call[1], call[3]], [4, call[1], "GenericError", "x", *details]]))
    elif how == "not_array":
        return dumps(draw(st.sampled_from([[], {}, "x", 2, None]) | JSON.filter(lambda v: type(v) is not list)), draw)
    elif how == "broken_json":
        text = dumps(call, draw).decode()
        cut = draw(st.integers(text.index(json.dumps(call[1])) + len(json.dumps(call[1])), len(text)))
        junk = draw(st.sampled_from(["", "}", "]", ",", "'", "\x00", "[", '"', "tru", "01"]))
        return (text[:cut] + junk + text[cut + draw(st.integers(0, 1)) :]).encode()
    elif how == "huge_number":
        return _huge_in_a_field(call, draw) or _with_field(call, draw(st.sampled_from(HUGE_NUMBERS)))
    elif how == "deep":
        # within every parser's limits (Python's json stops near 1000 levels), or beyond the gateway's (1024)
        depth = draw(st.integers(1, 800) | st.integers(1100, 1500))
        return _with_field(call, "[" * depth + "]" * depth)
    elif how == "duplicate_keys":
        return _with_field(call, '1,"zz":' + json.dumps(draw(JSON)))
    elif how == "non_utf8":
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80", b"\xe2\x82"]))
        return _with_field(call, '"a@@BAD@@b"').replace(b"@@BAD@@", bad)
    elif how == "surrogate":
        return _with_field(call, '"\\ud800x"')
    elif how == "constants":
        return _with_field(
            call, draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "undefined", "0x10", "+1", ".5"]))
        )
    elif how == "whitespace":
        return json.dumps(call, indent=draw(st.sampled_from([1, "\t", "\r\n"]))).encode()
    elif how == "big":
        return _with_field(call, json.dumps("x" * draw(st.integers(1000, 50_000))))
    return dumps(call, draw)


# ------------------------------------------------------------------------------------- what must be answered

Answer = Literal["one", "maybe", "none"]


@dataclass(frozen=True)
class Expectation:
    """``one``: exactly one CALLRESULT or CALLERROR with ``unique_id``; ``maybe``: at most one (known defects);
    ``none``: no answer at all (nothing readable to answer, or an answer to a CALL nobody sent)."""

    answer: Answer
    unique_id: str | None
    #: a text frame that is not UTF-8: RFC 6455 wants the connection failed with 1007
    non_utf8: bool = False
    #: a number of 2^63 or more, possibly once a meter value's multiplier is applied (:func:`has_huge_number`)
    huge_number: bool = False


_SALVAGEABLE = re.compile(r'^\s*\[\s*2\s*,\s*("(?:[^"\\]|\\.)*")')


def salvageable_id(text: str) -> str | None:
    """The unique id README promises to read from a CALL the gateway cannot parse: the JSON string right after
    ``[2,`` (escapes decoded), when it is not empty and can be written as UTF-8 (a long one is answered under "-1")."""
    m = _SALVAGEABLE.match(text)
    if m is None:
        return None
    try:
        uid = json.loads(m.group(1))
        uid.encode("utf-8")
    except (ValueError, UnicodeError):
        return None
    if not uid:
        return None
    return uid if len(uid) <= 36 else "-1"


_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]")
#: deeper than this, Python's json may run out of stack (RecursionError, near 1000 levels by default): such text is
#: refused before json sees it, and the frames drawn nest up to 800 levels (every parser reads them) or from 1100
#: (beyond the gateway's 1024, so they are refused there too)
MAX_DEPTH = 900


def nesting(text: str) -> int:
    """How deep arrays and objects nest in JSON text (strings skipped)."""
    depth = deepest = 0
    for c in _NOT_BRACKET.sub("", _STRING.sub("", text)):
        depth += 1 if c in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def loads(data: bytes | str, **kw: Any) -> Any:
    """``json.loads``, refusing (``ValueError``) text nested deeper than :data:`MAX_DEPTH`."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    if nesting(text) > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH}")
    return json.loads(text, **kw)


def strict_loads(data: bytes | str) -> Any:
    """JSON as RFC 8259 has it: UTF-8, no NaN/Infinity (``ValueError`` otherwise)."""
    return loads(data, parse_constant=_no_constants)


def _nodes(node: Any) -> Iterator[Any]:
    todo = [node]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, dict):
            todo += node.values()
        elif isinstance(node, list):
            todo += node


def has_huge_number(data: bytes) -> bool:
    """A number of 2^63 or more written anywhere (as JSON or as decimal text; infinity included), or a sampled value
    that its ``unitOfMeasure.multiplier`` makes one, or whose multiplier is beyond any decimal exponent range."""
    if any(abs(float(token)) >= 2**63 for token in _NUMBER.findall(data)):
        return True
    try:
        frame = loads(data)
    except ValueError:
        return False
    for node in _nodes(frame):
        unit = node.get("unitOfMeasure") if isinstance(node, dict) else None
        multiplier = unit.get("multiplier") if isinstance(unit, dict) else None
        if type(multiplier) is not int:
            continue
        value = node.get("value")
        if abs(multiplier) > 999_999:
            return True
        if type(value) in (int, float) and value and math.log10(abs(value)) + multiplier >= 18.9:
            return True
    return False


def _beyond_limits(data: bytes, frame: Any) -> bool:
    """JSON that RFC 8259 lets a parser refuse (§9): numbers no double holds (beyond ±1.8e308; larger integers are
    read as doubles, a 64-bit one as itself), lone surrogates. (Nesting deeper than MAX_DEPTH never parses here:
    such frames take the broken-frame rule.)"""
    numbers = _NUMBER.findall(_STRING.sub('""', data.decode("utf-8")).encode())  # JSON numbers, not digits in text
    if any(math.isinf(float(token)) for token in numbers):
        return True
    for node in _nodes(frame):
        for text in [node] if isinstance(node, str) else node if isinstance(node, dict) else []:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def expectation(data: bytes) -> Expectation:
    huge = has_huge_number(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return Expectation("none", None, non_utf8=True)  # the connection fails with 1007: nothing is answered
    salvaged = salvageable_id(text)
    try:
        frame = strict_loads(text)
    except ValueError:
        # a broken frame that starts like a CALL with a readable unique id: README promises the CALLERROR
        return Expectation("one", salvaged, huge_number=huge) if salvaged else Expectation("maybe", None)
    if type(frame) is not list or len(frame) < 2 or type(frame[1]) is not str or not frame[1]:
        return Expectation("none", None, huge_number=huge)
    uid = frame[1]
    if len(uid) > 36:  # too long to answer under: a CALL (or an unknown type) gets its CALLERROR under "-1"
        if type(frame[0]) is int and frame[0] in (3, 4):
            return Expectation("none", None, huge_number=huge)
        return Expectation("one", "-1", huge_number=huge)
    if type(frame[0]) is int and frame[0] in (3, 4):
        return Expectation("none", None, huge_number=huge)
    if _beyond_limits(data, frame):
        # the gateway refuses such JSON (as RFC 8259 §9 allows) and answers it as a broken frame
        return Expectation("one", salvaged, huge_number=huge) if salvaged else Expectation("none", None)
    return Expectation("one", uid, huge_number=huge)  # a CALL, or an unknown message type: answered either way


def frame_problem(data: bytes | str) -> str | None:
    """Why ``data`` is not a well-formed OCPP-J frame (None when it is one)."""
    try:
        frame = strict_loads(data)
    except ValueError as e:
        return f"not JSON: {e}"
    if type(frame) is not list or not frame:
        return "not a non-empty array"
    shapes = {2: (str, str, dict), 3: (str, dict), 4: (str, str, str, dict)}
    shape = shapes.get(frame[0]) if type(frame[0]) is int else None
    if shape is None:
        return f"unknown message type {frame[0]!r}"
    if len(frame) != len(shape) + 1 or not all(type(v) is t for v, t in zip(frame[1:], shape, strict=True)):
        return f"message type {frame[0]} must be [{frame[0]}, {', '.join(t.__name__ for t in shape)}]"
    if not 1 <= len(frame[1]) <= 36:
        return "unique id must have 1..36 characters"
    if frame[0] == 2 and not frame[2]:
        return "empty action"
    return None


# ------------------------------------------------------------------------------ the charger's answers to a CALL

#: an answer to the CALL ``@@UID@@``; the first ones are well-formed, the others broken in one way each
ANSWER_TEMPLATES = [
    '[3,@@UID@@,{"status":"Accepted"}]',
    '[4,@@UID@@,"NotSupported","not here",{}]',
    '[4,@@UID@@,"NotSupported","no details"]',
    "[3,@@UID@@]",
    "[3,@@UID@@,[]]",
    '[3,@@UID@@,{"status":"Accepted"},{}]',
    '[4,@@UID@@,17,"code not a string",{}]',
    '[4,@@UID@@,"GenericError","details not an object",[]]',
    '[3,@@UID@@,{"status":"Accepted"}',
    '[3,@@UID@@,{"status":NaN}]',
]
WELL_FORMED_ANSWERS = 2


def answers() -> st.SearchStrategy[list[str]]:
    """What a charger sends back for one CALL: one or two drawn answers, then a well-formed one (a CALL the gateway
    refused the first answers of is still waiting)."""
    return st.lists(st.sampled_from(ANSWER_TEMPLATES), min_size=1, max_size=2).map(lambda a: [*a, ANSWER_TEMPLATES[0]])
