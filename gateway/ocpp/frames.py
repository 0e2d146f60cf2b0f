r"""OCPP-J frames: text in, typed frame out, and back. Pure: no I/O, no logging.

    [2, "<uniqueId>", "<Action>", {payload}]                       CALL
    [3, "<uniqueId>", {payload}]                                   CALLRESULT
    [4, "<uniqueId>", "<errorCode>", "<errorDescription>", {details}] CALLERROR
    [5, "<uniqueId>", "<errorCode>", "<errorDescription>", {details}] CALLRESULTERROR  (OCPP 2.1)
    [6, "<uniqueId>", "<Action>", {payload}]                       SEND             (OCPP 2.1)

OCPP 2.1 adds the last two: a CALLRESULTERROR answers a CALLRESULT its receiver could not process (2.1 Part 2
FR.06: a response that fails its schema), under that CALLRESULT's unique id; a SEND is a message that expects no
answer at all (``NotifyPeriodicEventStream``). Nothing answers either of them. The codec parses both whatever the
version; which versions may send them is the session's business (1.6 and 2.0.1 have neither).

Every frame keeps the text it was parsed from (``raw``) so that pass-through forwards it byte for byte.

Duplicate keys (``{"status":"A","status":"B"}``): orjson keeps the last value and says nothing, while a CSMS may
keep the first, so the gateway's view of a payload (what it stores, translates, taps) and the receiver's could
differ. The choice was between refusing such a CALL with the version's format error (1.6 ``FormationViolation``,
2.x ``FormatViolation``) and forwarding a canonical re-serialisation; it refuses, because a re-serialisation
would end byte-for-byte pass-through for exactly the frames whose meaning is in doubt and would pick last-wins on
the sender's behalf, while a refusal tells the sender. A check costs more than the ~0.3 us per frame the hot path
can spare, though (``bench/duplicate_keys.py``, a 508-byte 1.6 MeterValues CALL, best of 7, three runs on the
2-core bench VM; the pass-through session costs 7.0-7.2 us per round trip there): the key tokens counted with the
regex ``"(?:[^"\\]|\\.)*"\s*:`` against the keys parsed 18-22 us (and it is unsound: a match may start at a
closing quote, ``["a",":"]``); every string token counted left to right 9.2-9.5 us; ``json.loads`` with an
``object_pairs_hook`` 7.0-7.4 us; :func:`has_duplicate_keys`, which compares the colons of the raw text with those
of orjson's re-serialisation, 1.6-1.7 us (``orjson.loads`` of the frame alone: 1.3-1.4 us). So the session checks
only where it reads the payload anyway (every CALL under ``session.validate_schemas`` or translation; else
BootNotification, StatusNotification and the CALLs that set a Basic auth password) and forwards every other frame
byte for byte, duplicates and all. A CALLRESULT read there with a duplicate key is counted and forwarded: OCPP-J
has no error channel for answers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import orjson

from gateway.ocpp.errors import MAX_UNIQUE_ID, ErrorKind, FrameError

__all__ = [
    "Call",
    "CallError",
    "CallResult",
    "CallResultError",
    "EncodeError",
    "Frame",
    "MAX_UNIQUE_ID",
    "MessageType",
    "call_error_text",
    "call_result_text",
    "call_result_error_text",
    "call_text",
    "has_duplicate_keys",
    "parse_frame",
    "send_text",
    "Send",
]

MAX_ACTION = 64


class MessageType(IntEnum):
    CALL = 2
    CALLRESULT = 3
    CALLERROR = 4
    CALLRESULTERROR = 5
    SEND = 6


Raw = bytes | str

# The frame classes are plain slotted dataclasses, not frozen ones: a frozen dataclass sets each field through
# ``object.__setattr__``, which made building one 550 ns against 140 ns (timeit, the 2-core bench VM), and two are
# built per proxied round trip. Nothing changes a frame once parsed (a repaired frame is a new one).


@dataclass(slots=True)
class Call:
    unique_id: str
    action: str
    payload: dict[str, Any]
    raw: Raw


@dataclass(slots=True)
class CallResult:
    unique_id: str
    payload: dict[str, Any]
    raw: Raw


@dataclass(slots=True)
class CallError:
    unique_id: str
    code: str
    description: str
    details: dict[str, Any]
    raw: Raw


@dataclass(slots=True)
class CallResultError:
    """OCPP 2.1: the receiver of the CALLRESULT with ``unique_id`` could not process it (never answered)."""

    unique_id: str
    code: str
    description: str
    details: dict[str, Any]
    raw: Raw


@dataclass(slots=True)
class Send:
    """OCPP 2.1: a message that expects no answer (never answered, takes no turn of the one-CALL-at-a-time rule)."""

    unique_id: str
    action: str
    payload: dict[str, Any]
    raw: Raw


Frame = Call | CallResult | CallError | CallResultError | Send

# Best effort to read a unique id out of a frame that is not valid JSON, so that it can still be answered: the
# id's string token (escapes included: "\u00e9x" is "éx") right after the message type, within the first 4 KiB.
_ID_IN_BROKEN = re.compile(r'^\s*\[\s*([234])\s*,\s*("(?:[^"\\]|\\.)+")')
_SALVAGE_SPAN = 4096


def _salvage(text: Raw) -> tuple[str | None, bool]:
    """The unique id (any non-empty string that can be written as UTF-8: a long one is answered under "-1") and
    whether the frame looks like a CALL."""
    head = text[:_SALVAGE_SPAN]
    m = _ID_IN_BROKEN.match(head.decode("utf-8", "replace") if isinstance(head, bytes) else head)
    if m is None:
        return None, False
    try:
        uid = json.loads(m.group(2))  # the stdlib reads a lone surrogate escape; it is refused just below
        uid.encode("utf-8")
    except (ValueError, UnicodeError):
        return None, False
    return uid, m.group(1) == "2"


def _is_utf8(text: Raw) -> bool:
    """``text`` is valid UTF-8 (bytes as received), or a str that can be written as UTF-8 (no lone surrogates)."""
    try:
        if isinstance(text, bytes):
            text.decode("utf-8")
        else:
            text.encode("utf-8")
    except UnicodeError:
        return False
    return True


def parse_frame(text: Raw) -> Frame:
    """Parse one OCPP-J text frame (UTF-8 bytes as received, or str); the frame keeps ``text`` as ``raw``.

    Invalid UTF-8 (orjson checks it while parsing) is its own kind, looked for only once orjson has refused the
    frame: the valid frames pay no decode of their own. Raises :class:`FrameError` with the kind of violation
    and, when readable, the unique id (a string id longer than 36 characters included: see
    :meth:`FrameError.answer_id`). Never raises anything else for any input.
    """
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError:
        # cold path: orjson checks UTF-8 as it parses, so only a frame it refused is looked at again
        if not _is_utf8(text):
            raise FrameError(ErrorKind.INVALID_UTF8, "text frame is not valid UTF-8", None, False) from None
        uid, is_call = _salvage(text)
        raise FrameError(ErrorKind.INVALID_JSON, "frame is not valid JSON", uid, is_call) from None
    if type(msg) is not list or not msg:
        raise FrameError(ErrorKind.NOT_ARRAY, "frame is not a non-empty JSON array")
    mt = msg[0]
    n = len(msg)
    uid = msg[1] if n > 1 else None
    if type(uid) is not str or not uid:
        # Unreadable id: nothing can be answered.
        raise FrameError(ErrorKind.BAD_UNIQUE_ID, "unique id must be a string of 1..36 characters", None, mt == 2)
    if len(uid) > MAX_UNIQUE_ID:
        # Readable but too long: a CALL is answered (FrameError.answer_id says with which id per version).
        raise FrameError(ErrorKind.BAD_UNIQUE_ID, "unique id must be a string of 1..36 characters", uid, mt == 2)
    if type(mt) is not int:
        raise FrameError(ErrorKind.BAD_MESSAGE_TYPE, "message type must be an integer", uid, True)
    if mt == 2:
        if n != 4:
            raise FrameError(ErrorKind.BAD_SHAPE, f"CALL must have 4 elements, got {n}", uid)
        action = msg[2]
        if type(action) is not str or not action or len(action) > MAX_ACTION:
            raise FrameError(ErrorKind.BAD_ACTION, "action must be a non-empty string", uid)
        payload = msg[3]
        if type(payload) is not dict:
            raise FrameError(ErrorKind.PAYLOAD_NOT_OBJECT, "payload must be a JSON object", uid)
        return Call(uid, action, payload, text)
    if mt == 3:
        if n != 3:
            raise FrameError(ErrorKind.BAD_SHAPE, f"CALLRESULT must have 3 elements, got {n}", uid, False)
        payload = msg[2]
        if type(payload) is not dict:
            raise FrameError(ErrorKind.PAYLOAD_NOT_OBJECT, "payload must be a JSON object", uid, False)
        return CallResult(uid, payload, text)
    if mt == 4:
        if n not in (4, 5):
            raise FrameError(ErrorKind.BAD_SHAPE, f"CALLERROR must have 5 elements, got {n}", uid, False)
        code, desc = msg[2], msg[3]
        details = msg[4] if n == 5 else {}
        if type(code) is not str or type(desc) is not str or type(details) is not dict:
            raise FrameError(
                ErrorKind.BAD_SHAPE, "CALLERROR code/description must be strings, details an object", uid, False
            )
        if n == 4:  # read without its ErrorDetails, which OCPP-J requires: what goes on is the five-element frame
            text = _same_kind(text, _dumps([4, uid, code, desc, details]))
        return CallError(uid, code, desc, details, text)
    if mt == 5 or mt == 6:
        return _parse_v21(msg, mt, n, uid, text)
    raise FrameError(ErrorKind.UNKNOWN_MESSAGE_TYPE, f"unknown message type {mt!r}", uid, True)


def _parse_v21(msg: list[Any], mt: int, n: int, uid: str, text: Raw) -> CallResultError | Send:
    """The two frame types OCPP 2.1 adds; a malformed one is never answered (``is_call`` False)."""
    if mt == 6:
        action, payload = (msg[2], msg[3]) if n == 4 else (None, None)
        if type(action) is not str or not action or len(action) > MAX_ACTION:
            raise FrameError(ErrorKind.BAD_SHAPE, "SEND must be [6, id, action, {payload}]", uid, False, mt)
        if type(payload) is not dict:
            raise FrameError(ErrorKind.PAYLOAD_NOT_OBJECT, "payload must be a JSON object", uid, False, mt)
        return Send(uid, action, payload, text)
    if n not in (4, 5):
        raise FrameError(ErrorKind.BAD_SHAPE, f"CALLRESULTERROR must have 5 elements, got {n}", uid, False, mt)
    code, desc = msg[2], msg[3]
    details = msg[4] if n == 5 else {}
    if type(code) is not str or type(desc) is not str or type(details) is not dict:
        raise FrameError(
            ErrorKind.BAD_SHAPE, "CALLRESULTERROR code/description must be strings, details an object", uid, False, mt
        )
    if n == 4:
        text = _same_kind(text, _dumps([5, uid, code, desc, details]))
    return CallResultError(uid, code, desc, details, text)


def _same_kind(received: Raw, encoded: bytes) -> Raw:
    """``encoded`` as bytes or str, like the frame it stands for."""
    return encoded if isinstance(received, bytes) else encoded.decode()


_dumps = orjson.dumps
#: what the encoders below raise for a payload orjson cannot encode (an integer beyond 64 bits, nesting deeper than
#: 254, a key that is not a string); a non-finite float is written as ``null`` without an error
#: (:mod:`gateway.ocpp.numbers` checks numbers before a payload is encoded)
EncodeError = orjson.JSONEncodeError

#: every string token of a valid JSON text, left to right, with the ``:`` that makes it a key (group 1)
_STRING_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"(\s*:)?', re.DOTALL)


def has_duplicate_keys(frame: Call | CallResult) -> bool:
    r"""``frame``'s JSON has an object with the same key twice (orjson kept the last value without a word).

    Fast path: a ``:`` outside strings is a key's, so the colons of the text as received equal those of its
    canonical serialisation (orjson's, of what was parsed) exactly when no key was given twice, unless an escape
    hides a colon (``\u003a``): a frame with a ``\u`` escape counts its key tokens instead (slow path).
    """
    raw = frame.raw if isinstance(frame.raw, bytes) else frame.raw.encode()
    if b"\\u" in raw:
        return _counted_keys_differ(raw, frame.payload)
    try:
        canonical = _dumps(frame.payload)
    except EncodeError:  # nested deeper than orjson writes (254; it reads 1024): count instead
        return _counted_keys_differ(raw, frame.payload)
    n = canonical.count(b":") + frame.unique_id.count(":")
    if type(frame) is Call:
        n += frame.action.count(":")
    return raw.count(b":") != n


def _counted_keys_differ(raw: bytes, payload: dict[str, Any]) -> bool:
    """Slow path of :func:`has_duplicate_keys`: the key tokens of the text against the keys that were parsed."""
    return sum(1 for colon in _STRING_TOKEN.findall(raw) if colon) != _count_keys(payload)


def _count_keys(value: object) -> int:
    """The keys of every object in ``value`` (parsed JSON), without recursion."""
    n = 0
    todo = [value]
    while todo:
        v = todo.pop()
        if type(v) is dict:
            n += len(v)
            todo.extend(v.values())
        elif type(v) is list:
            todo.extend(v)
    return n


def call_text(unique_id: str, action: str, payload: dict[str, Any]) -> bytes:
    """A CALL frame, UTF-8."""
    return _dumps([2, unique_id, action, payload])


def call_result_text(unique_id: str, payload: dict[str, Any]) -> bytes:
    """A CALLRESULT frame, UTF-8."""
    return _dumps([3, unique_id, payload])


def call_error_text(unique_id: str, code: str, description: str, details: dict[str, Any] | None = None) -> bytes:
    """A CALLERROR frame, UTF-8 (description cut to 255 characters)."""
    return _dumps([4, unique_id, code, description[:255], details or {}])


def call_result_error_text(unique_id: str, code: str, description: str, details: dict[str, Any] | None = None) -> bytes:
    """A CALLRESULTERROR frame (OCPP 2.1), UTF-8 (description cut to 255 characters)."""
    return _dumps([5, unique_id, code, description[:255], details or {}])


def send_text(unique_id: str, action: str, payload: dict[str, Any]) -> bytes:
    """A SEND frame (OCPP 2.1), UTF-8."""
    return _dumps([6, unique_id, action, payload])
