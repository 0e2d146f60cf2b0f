"""The numbers the gateway carries when it re-encodes a payload (translated sessions). Pure: no I/O.

A pass-through frame goes on as the bytes it came in as; a translated one is parsed, rebuilt and encoded again
with ``orjson``, which parses integers up to 2**64 - 1 as ``int`` and larger ones as ``float``, encodes no integer
beyond 64 bits (:data:`gateway.ocpp.frames.EncodeError`, a ``TypeError``) and writes a non-finite float as
``null``. The OCPP schemas bound no ``evseId``, ``connectorId`` or ``transactionId`` (only a few ``minimum`` 0 and
the SoC ``maximum`` 100), and the 2.0.1 ones (draft-06) take an integral float such as ``1.8446744073709552e19``
for an ``integer``; the 1.6 ones (draft-04) do not, so a 1.6 integer field beyond 2**64 - 1 is already a schema
violation. The range is therefore the gateway's own: **signed 64-bit**, the widest integer the peers'
implementations commonly hold (Java ``long``, ``int64`` columns). A number fits when it is an integer in
[-2**63, 2**63 - 1], or a finite float whose magnitude is below 2**63 (a float at or beyond it is an integer too
large, as orjson read it, or a magnitude no OCPP quantity has: 9.2e18 Wh). Booleans are not numbers here.

:func:`out_of_range` finds a number that does not fit (its JSON path, for the CALLERROR's description);
:func:`fits` checks one value; :func:`small_int` reads a short decimal digit string (a configuration value) without
Python's ``int()`` pitfalls (``"²".isdigit()`` is true, and digit strings over 4,300 characters raise)."""

from __future__ import annotations

from typing import Any

__all__ = ["INT_MAX", "INT_MIN", "LIMIT", "fits", "out_of_range", "out_of_range_in_frame", "small_int"]

INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
LIMIT = 2.0**63
_DIGITS = frozenset("0123456789")


def fits(value: object) -> bool:
    """Whether one number is within the range (anything that is not a number fits)."""
    if type(value) is int:
        return INT_MIN <= value <= INT_MAX
    if type(value) is float:
        return -LIMIT < value < LIMIT  # NaN compares false: out of range too
    return True


def out_of_range(payload: object) -> str | None:
    """The JSON path (``$.meterValue[0].sampledValue[1].value``) of a number in ``payload`` outside the range (the
    first in document order), None when every number fits. Iterative: payloads nest up to orjson's 1,024 levels."""
    stack: list[Any] = [payload]
    pop, extend = stack.pop, stack.extend
    while stack:
        value = pop()
        t = type(value)
        if t is dict:
            extend(value.values())
        elif t is str:
            continue
        elif t is int:
            if not INT_MIN <= value <= INT_MAX:
                return _path(payload) or "$"
        elif t is float:
            if not -LIMIT < value < LIMIT:  # NaN compares false: out of range too
                return _path(payload) or "$"
        elif t is list or t is tuple:
            extend(value)
    return None


#: what the JSON text of a number outside the range must contain: 19 digits in a row (2**63 has 19), or an exponent
#: (a digit followed by ``e``/``E``). Looked for in the text with every digit mapped to ``0``, ``e``/``E`` to ``e``
#: and every other byte to a space (``bytes.translate``, then two substring searches): the same question as the
#: regular expression ``[0-9]{19}|[0-9][eE]``, which took ~43 µs on a 600-byte MeterValues (Python's engine tries
#: the 19-digit branch at every digit) against ~3 µs for the table (``bench/translate_cost.py``'s frames)
_NUMBER_BYTES = bytes(0x30 if 0x30 <= b <= 0x39 else 0x65 if b in (0x45, 0x65) else 0x20 for b in range(256))
_LONG_DIGITS = b"0" * 19
_EXPONENT = b"0e"


def out_of_range_in_frame(raw: bytes | str, payload: object) -> str | None:
    """:func:`out_of_range` of a payload parsed from ``raw`` (the frame's text as received), without walking it when
    the text cannot hold such a number: one written in JSON with neither 19 digits in a row nor an exponent is an
    integer of at most 18 digits or a decimal below 10**18 in magnitude, inside the range. A frame that has them
    (an id of 19 digits, a hex uuid with ``5e``) is walked as before. The walk was ~8 % of a translated round trip in
    process, two of its four walks being of the frames as received (py-spy over ``bench/translate_cost.py``)."""
    if not _may_hold_out_of_range(raw if type(raw) is bytes else str(raw).encode()):
        return None
    return out_of_range(payload)


def _may_hold_out_of_range(data: bytes) -> bool:
    """``data`` has 19 digits in a row or a digit followed by ``e``/``E`` (``[0-9]{19}|[0-9][eE]``)."""
    mapped = data.translate(_NUMBER_BYTES)
    return _EXPONENT in mapped or _LONG_DIGITS in mapped


def _path(payload: object) -> str | None:
    """The path of the first number out of range, in document order."""
    todo: list[tuple[Any, str]] = [(payload, "$")]
    while todo:
        value, path = todo.pop()
        t = type(value)
        if t is dict:
            todo.extend((v, f"{path}.{k}") for k, v in reversed(value.items()))
        elif t is list or t is tuple:
            todo.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(value))))
        elif (t is int or t is float) and not fits(value):
            return path
    return None


def small_int(text: object, max_digits: int = 18) -> int | None:
    """A non-negative integer written in ASCII digits (at most ``max_digits``), else None."""
    if not isinstance(text, str) or not text or len(text) > max_digits or not _DIGITS.issuperset(text):
        return None
    return int(text)
