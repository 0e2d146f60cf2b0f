"""The HTTP side of a charger's handshake, pure: the request head, the charger id in the path, refusals.

Nothing here does I/O or knows OCPP beyond the path layout ``<path_prefix>/<charger id>``.
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import unquote

from gateway.errors import ChargerRejected

__all__ = [
    "MAX_CHARGER_ID",
    "MAX_HEADERS",
    "MAX_REQUEST_HEAD",
    "HttpRequest",
    "check_websocket_upgrade",
    "http_error",
    "parse_charger_id",
    "parse_request_head",
]

MAX_CHARGER_ID = 48
#: the request head (request line and headers, without the blank line) must be shorter: picows, which the head is
#: handed to once admitted, drops a head of 16 KiB or more without an answer
MAX_REQUEST_HEAD = 16 * 1024
#: header fields per request: an OCPP upgrade has about ten (Host, Upgrade, Connection, the three Sec-WebSocket-*,
#: Authorization, a few of the client's own); picows refuses more than 128 with a 400 after admission. 100 leaves
#: room for chatty clients and proxies and stays under that.
MAX_HEADERS = 100


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    raw_path: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "


def parse_request_head(head: bytes) -> HttpRequest:
    """Request line and headers of an HTTP/1.1 request (``head`` ends before the blank line)."""
    try:
        text = head.decode("latin-1")
        lines = text.split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise ChargerRejected(400, "bad_request", "malformed HTTP request line") from None
    if version != "HTTP/1.1":  # RFC 6455 §4.1 asks for 1.1 or higher; picows takes exactly 1.1
        raise ChargerRejected(400, "bad_request", "HTTP/1.1 required")
    if len(lines) - 1 > MAX_HEADERS:
        raise ChargerRejected(431, "head_too_large", f"more than {MAX_HEADERS} header fields")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ChargerRejected(400, "bad_request", "malformed HTTP header")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return HttpRequest(method, target, headers)


def check_websocket_upgrade(headers: Mapping[str, str]) -> None:
    """Refuse (:class:`ChargerRejected`) a request that is no WebSocket opening handshake the gateway can complete
    (RFC 6455 §4.2.1, §4.2.2), before admission opens an upstream link for it.

    * ``Upgrade: websocket`` and ``Connection: Upgrade`` (case-insensitive), else 400. picows, which completes the
      handshake, wants exactly these values (not a token list such as ``keep-alive, Upgrade``) and would refuse
      anything else only after admission.
    * ``Sec-WebSocket-Version: 13``, else 426 with ``Sec-WebSocket-Version: 13`` (§4.2.2; picows also takes 7 and
      8, drafts whose framing differs).
    * ``Sec-WebSocket-Key``: one header, the base64 of 16 bytes, else 400 (a repeated header arrives joined with
      ", " and is no base64).
    """
    if headers.get("upgrade", "").lower() != "websocket" or headers.get("connection", "").lower() != "upgrade":
        raise ChargerRejected(
            400, "not_websocket", "WebSocket upgrade required (Upgrade: websocket, Connection: Upgrade)"
        )
    if headers.get("sec-websocket-version") != "13":
        raise ChargerRejected(
            426, "bad_websocket_version", "WebSocket version 13 required", {"Sec-WebSocket-Version": "13"}
        )
    key = headers.get("sec-websocket-key")
    if key is None or not _is_websocket_key(key):
        raise ChargerRejected(400, "bad_websocket_key", "Sec-WebSocket-Key must be one base64-encoded 16-byte value")


def _is_websocket_key(key: str) -> bool:
    try:
        return len(b64decode(key.encode("ascii"), validate=True)) == 16
    except (UnicodeEncodeError, binascii.Error):
        return False


def http_error(status: int, text: str, headers: Mapping[str, str] | None = None) -> bytes:
    body = (text + "\n").encode()
    reason = HTTPStatus(status).phrase
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n{extra}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def parse_charger_id(raw_path: str, prefix: str) -> str:
    """The charger id from the request's raw (percent-encoded) path, or :class:`ChargerRejected`."""
    path = raw_path.split("?", 1)[0]
    if not path.startswith(prefix + "/"):
        raise ChargerRejected(404, "bad_path", f"path must be {prefix}/<charger id>")
    segment = path[len(prefix) + 1 :]
    if not segment or "/" in segment:
        raise ChargerRejected(404, "bad_path", f"path must be {prefix}/<charger id>")
    try:
        cid = unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise ChargerRejected(400, "bad_charger_id", "charger id is not valid UTF-8") from None
    if not 1 <= len(cid) <= MAX_CHARGER_ID or "/" in cid or not cid.isprintable():
        raise ChargerRejected(400, "bad_charger_id", "charger id must be 1..48 printable characters without '/'")
    return cid
