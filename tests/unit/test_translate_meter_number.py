"""A 1.6 sample value read as a number (gateway/translate/v16_v201/meter.py ``number``): the fast path for plain
decimal texts gives exactly what the ``Decimal`` path gives, value and type."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.translate.v16_v201.meter import _number_of_decimal, number

_PLAIN = st.from_regex(r"\A-?[0-9]{0,17}(\.[0-9]{0,17})?\Z", fullmatch=True)
_ANY = st.text(alphabet="0123456789.-+eE _\u00b2 ", max_size=24)


def _same(text: str) -> None:
    fast, slow = number(text), _number_of_decimal(text)
    assert fast == slow and type(fast) is type(slow), (text, fast, slow)


@given(_PLAIN | _ANY | st.decimals(allow_nan=False, allow_infinity=False).map(str) | st.floats().map(repr))
def test_the_fast_path_reads_what_decimal_reads(text: str) -> None:
    _same(text)


def test_edges_of_the_fast_path() -> None:
    edges = ["0", "-0", "-0.0", "007", "5.", ".5", "-.5", "12.000", "999999999999999", "999999999999999.5",
             "99999999999999.5", "0.000000000000001", "9353.5", "230.10", "-", ".", "", "1.2.3", "--1"]  # fmt: skip
    for text in edges:
        _same(text)


_MULTIPLIERS = st.sampled_from([0, 0, 0, 1, -1, 3, 0.0, 2.0, True])


@given(st.integers() | st.floats() | st.sampled_from([0.0, -0.0, 1e-4, 9.999e15, 1e16, 230.0, 9353.5]), _MULTIPLIERS)
def test_the_fast_path_of_a_201_value_writes_what_decimal_writes(value: float, multiplier: object) -> None:
    from gateway.translate.v201_v16.meter import _text_of_decimal, decimal_text

    assert decimal_text(value, multiplier) == _text_of_decimal(value, multiplier)
