"""OCPP-J CALLERROR codes, per version, and the codec's typed errors.

The codes differ between versions (OCPP-J 1.6 §4.2.3 and OCPP 2.0.1 Part 4 §4.3):

* 1.6: NotImplemented, NotSupported, InternalError, ProtocolError, SecurityError, FormationViolation,
  PropertyConstraintViolation, OccurenceConstraintViolation, TypeConstraintViolation, GenericError.
* 2.0.1: FormatViolation, GenericError, InternalError, MessageTypeNotSupported, NotImplemented, NotSupported,
  OccurrenceConstraintViolation, PropertyConstraintViolation, ProtocolError, RpcFrameworkError, SecurityError,
  TypeConstraintViolation.

* 2.1: the same twelve as 2.0.1 (OCPP 2.1 Part 4 keeps 2.0.1's table of RPC framework error codes and adds no
  code; what 2.1 adds to error handling is a frame type, CALLRESULTERROR, which carries these same codes). The
  ``ocpp`` package's 2.1 module defines no further code either. :data:`V21_CODES` is its own name so that a code
  added by a later 2.1 edition has one place to go.

The occurrence code is spelled with one "r" in the 1.6 specification text (OCPP-J 1.6 §4.2.3 table) and with two
in 2.0.1 Part 4 Table 8; the OCPP-J 1.6 errata v1.0 §5 allows two on 1.6 as well. We accept both spellings on
input (:func:`normalise_code`) and emit the one each version's base document prints (:func:`code_for`).
"""

from __future__ import annotations

from enum import StrEnum

from gateway.ocpp.versions import is_v16

__all__ = [
    "MAX_UNIQUE_ID", "UNUSABLE_ID_ANSWER", "ErrorKind", "FrameError", "busy_code", "code_for", "codes_of",
    "normalise_code", "V16_CODES", "V201_CODES", "V21_CODES",
]  # fmt: skip

V16_CODES = frozenset(
    {
        "NotImplemented",
        "NotSupported",
        "InternalError",
        "ProtocolError",
        "SecurityError",
        "FormationViolation",
        "PropertyConstraintViolation",
        "OccurenceConstraintViolation",
        "TypeConstraintViolation",
        "GenericError",
    }
)
V201_CODES = frozenset(
    {
        "FormatViolation",
        "GenericError",
        "InternalError",
        "MessageTypeNotSupported",
        "NotImplemented",
        "NotSupported",
        "OccurrenceConstraintViolation",
        "PropertyConstraintViolation",
        "ProtocolError",
        "RpcFrameworkError",
        "SecurityError",
        "TypeConstraintViolation",
    }
)

#: OCPP 2.1 Part 4: 2.0.1's codes, none added (see the module docstring)
V21_CODES = V201_CODES


def codes_of(version: str) -> frozenset[str]:
    """The CALLERROR (and, in 2.1, CALLRESULTERROR) codes ``version`` defines ("2.0" has 2.0.1's)."""
    if is_v16(version):
        return V16_CODES
    return V21_CODES if version == "2.1" else V201_CODES


class ErrorKind(StrEnum):
    """Why a frame was refused; also the bounded ``kind`` label of ``ocppgw_frame_errors_total``."""

    INVALID_JSON = "invalid_json"
    #: a text frame that is not UTF-8: not answered, the connection fails with 1007 (RFC 6455 §8.1)
    INVALID_UTF8 = "invalid_utf8"
    NOT_ARRAY = "not_array"
    BAD_MESSAGE_TYPE = "bad_message_type"
    UNKNOWN_MESSAGE_TYPE = "unknown_message_type"
    BAD_UNIQUE_ID = "bad_unique_id"
    BAD_ACTION = "bad_action"
    BAD_SHAPE = "bad_shape"
    PAYLOAD_NOT_OBJECT = "payload_not_object"
    #: an object with a key given twice, where the gateway reads the payload (see ``frames.has_duplicate_keys``)
    DUPLICATE_KEYS = "duplicate_keys"
    BINARY = "binary"
    TOO_BIG = "too_big"


# (1.6 code, 2.x code) for each kind of malformed frame.
_CODES: dict[ErrorKind, tuple[str, str]] = {
    ErrorKind.INVALID_JSON: ("FormationViolation", "RpcFrameworkError"),
    ErrorKind.INVALID_UTF8: ("FormationViolation", "RpcFrameworkError"),  # never sent: the connection fails
    ErrorKind.NOT_ARRAY: ("ProtocolError", "RpcFrameworkError"),
    ErrorKind.BAD_MESSAGE_TYPE: ("ProtocolError", "RpcFrameworkError"),
    ErrorKind.UNKNOWN_MESSAGE_TYPE: ("ProtocolError", "MessageTypeNotSupported"),
    ErrorKind.BAD_UNIQUE_ID: ("ProtocolError", "RpcFrameworkError"),
    ErrorKind.BAD_ACTION: ("ProtocolError", "RpcFrameworkError"),
    ErrorKind.BAD_SHAPE: ("ProtocolError", "RpcFrameworkError"),
    ErrorKind.PAYLOAD_NOT_OBJECT: ("FormationViolation", "FormatViolation"),
    ErrorKind.DUPLICATE_KEYS: ("FormationViolation", "FormatViolation"),
    ErrorKind.BINARY: ("FormationViolation", "FormatViolation"),
    ErrorKind.TOO_BIG: ("FormationViolation", "FormatViolation"),
}


def code_for(kind: ErrorKind, version: str) -> str:
    """The CALLERROR code that ``version`` names for a frame refused for ``kind``."""
    v16, v2 = _CODES[kind]
    return v16 if is_v16(version) else v2


def busy_code(version: str) -> str:
    """The CALLERROR code for "one CALL at a time, and the queue behind it is full" in ``version``."""
    return "ProtocolError" if is_v16(version) else "RpcFrameworkError"


_SPELLINGS = {"OccurenceConstraintViolation", "OccurrenceConstraintViolation"}
_FORMAT = {"FormationViolation", "FormatViolation"}


def normalise_code(code: str, version: str) -> str:
    """Spell ``code`` (received from either version) the way ``version`` emits it.

    Unknown codes become GenericError, which both versions define.
    """
    v16 = is_v16(version)
    if code in _SPELLINGS:
        return "OccurenceConstraintViolation" if v16 else "OccurrenceConstraintViolation"
    if code in _FORMAT:
        return "FormationViolation" if v16 else "FormatViolation"
    if code in ("RpcFrameworkError", "MessageTypeNotSupported") and v16:
        return "ProtocolError"
    return code if code in codes_of(version) else "GenericError"


#: the longest unique id OCPP-J allows (1.6 and 2.x)
MAX_UNIQUE_ID = 36
#: the unique id of a CALLERROR answering a CALL whose own id cannot be used (OCPP 2.0.1 Part 4 §4.2.3, CALLERROR;
#: 2.1 keeps it): a peer matches no CALL of its own to it, and knows its CALL was refused
UNUSABLE_ID_ANSWER = "-1"


class FrameError(Exception):
    """The peer sent a frame that is not valid OCPP-J.

    ``unique_id`` is set when it could be read (a string id over 36 characters, too), so that the session can
    answer with a CALLERROR (under :meth:`answer_id`); ``is_call`` tells whether the frame looked like a CALL (only
    CALLs are answered). A frame that fails its sender's connection instead has a :attr:`close_code`. ``v21_type``
    is the message type of a malformed SEND (6) or CALLRESULTERROR (5): to a peer before 2.1 an unknown one.
    """

    def __init__(
        self, kind: ErrorKind, detail: str, unique_id: str | None = None, is_call: bool = True, v21_type: int = 0
    ) -> None:
        super().__init__(f"{kind.value}: {detail}")
        self.kind = kind
        self.detail = detail
        self.unique_id = unique_id
        self.is_call = is_call
        self.v21_type = v21_type

    def code(self, version: str) -> str:
        """The CALLERROR code for this error in ``version``."""
        return code_for(self.kind, version)

    @property
    def close_code(self) -> int | None:
        """The WebSocket close code that fails the sender's connection instead of an answer; None: answered (or
        dropped) and the session goes on. Invalid UTF-8 in a text frame: 1007, invalid frame payload data (RFC 6455
        §7.4.1; §8.1 says to fail the connection)."""
        return 1007 if self.kind is ErrorKind.INVALID_UTF8 else None

    def answer_id(self, version: str) -> str | None:
        """The unique id to answer this frame's CALLERROR under in ``version``; None: it is not answered (not a
        CALL, or no string id to read).

        A unique id longer than 36 characters cannot be used: it is answered under "-1" (OCPP 2.0.1 Part 4 §4.2.3).
        OCPP-J 1.6 names no such id, but echoing the long one makes a frame that strict peers reject (a unique id
        has at most 36 characters in both versions), so a 1.6 peer gets "-1" too: an answer it can read.
        """
        uid = self.unique_id
        if uid is None or not self.is_call or self.close_code is not None:
            return None
        if len(uid) > MAX_UNIQUE_ID:
            return UNUSABLE_ID_ANSWER
        return uid
