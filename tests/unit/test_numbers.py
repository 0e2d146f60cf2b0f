"""The numbers the gateway carries when it re-encodes a payload (gateway/ocpp/numbers.py)."""

from __future__ import annotations

import math
import re
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.ocpp.frames import EncodeError, call_text
from gateway.ocpp.numbers import _may_hold_out_of_range, fits, out_of_range, out_of_range_in_frame, small_int


@pytest.mark.parametrize(
    "value", [0, -1, 2**63 - 1, -(2**63), 9.2e18, -9.2e18, 1e-300, 5e-324, -0.0, 1.5, True, "1e999", None]
)
def test_what_fits(value: Any) -> None:
    assert fits(value)


@pytest.mark.parametrize(
    "value", [2**63, -(2**63) - 1, 2**64, 2.0**63, -(2.0**63), 1e308, math.inf, -math.inf, math.nan]
)
def test_what_does_not_fit(value: Any) -> None:
    assert not fits(value)


def test_orjson_reads_beyond_64_bits_as_a_float_and_cannot_write_the_integer() -> None:
    """Why the range exists: what orjson does at its edges (pinned, so that an upgrade that changes it is seen)."""
    assert orjson.loads(b"18446744073709551615") == 2**64 - 1
    assert type(orjson.loads(b"18446744073709551616")) is float
    with pytest.raises(EncodeError):
        call_text("1", "X", {"n": 2**64})
    assert orjson.dumps(math.inf) == b"null"


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"a": 1, "b": [1.5, {"c": 2**63}]}, "$.b[1].c"),
        ({"meterValue": [{"sampledValue": [{"value": 1}, {"value": 1e308}]}]}, "$.meterValue[0].sampledValue[1].value"),
        ([2**64], "$[0]"),
        ({"first": 2**64, "second": -(2**64)}, "$.first"),
        (math.nan, "$"),
        ({"ok": [1, 2.5, "9" * 30, None, True]}, None),
    ],
)
def test_out_of_range_names_the_first_number_in_document_order(payload: Any, path: str | None) -> None:
    assert out_of_range(payload) == path


def test_out_of_range_walks_any_depth_orjson_reads() -> None:
    nested: Any = 2**64
    for _ in range(1000):
        nested = [nested]
    assert out_of_range(nested) == "$" + "[0]" * 1000


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("42", 42), ("9" * 18, 10**18 - 1), ("9" * 19, None), ("\u00b2", None), ("-1", None), ("", None),
     (" 1", None), ("1" * 5000, None), (7, None)],
)  # fmt: skip
def test_small_int(text: Any, value: int | None) -> None:
    assert small_int(text) == value


@pytest.mark.parametrize(
    "text",
    [
        b'{"a":1,"b":"x"}',
        b'{"a":999999999999999999}',  # 18 digits: inside, not walked
        b'{"a":9223372036854775807}',
        b'{"a":9223372036854775808}',
        b'{"a":-9223372036854775809}',
        b'{"a":18446744073709551616}',  # beyond 64 bits: orjson reads a float
        b'{"a":[1.5,9.3e18]}',
        b'{"a":9.2233720368547758E18}',
        b'{"a":1e2,"id":"5e3f"}',
        b'{"a":92233720368547758080.0}',
        b'{"a":-0.000000000000000000001}',
        '{"a":"\u00e9","b":[9223372036854775808]}',
    ],
)
def test_the_check_of_a_parsed_frame_agrees_with_the_walk(text: bytes | str) -> None:
    payload = orjson.loads(text)
    assert out_of_range_in_frame(text, payload) == out_of_range(payload)


_THE_REGEX = re.compile(rb"[0-9]{19}|[0-9][eE]")


@given(st.binary(max_size=80) | st.text(alphabet="0123456789eE.-+ a:", max_size=60).map(str.encode))
def test_the_text_precheck_asks_what_the_regex_asks(data: bytes) -> None:
    assert _may_hold_out_of_range(data) == (_THE_REGEX.search(data) is not None)


@pytest.mark.parametrize(
    "text", [b"1" * 18, b"1" * 19, b"x" + b"1" * 19 + b"x", b"1e", b"1E", b"e1", b"ee", b"9" * 18 + b"x9"]
)
def test_the_text_precheck_on_edges(text: bytes) -> None:
    assert _may_hold_out_of_range(text) == (_THE_REGEX.search(text) is not None)
