"""The gateway's exception tree. Each error says who broke the rule and carries its wire hint.

    GatewayError
     ├── ChargerRejected        the charger's handshake is refused before the upgrade -> ``http_status``
     ├── BackendUnavailable     a backend cannot be reached -> HTTP 502 (refused/failed) or 503 (timeout)
     │    └── BackendBusy       the backend's admission pacing has no turn for the charger in time -> 503 + Retry-After
     ├── NoUpstreamCredentials  no client certificate / password for this charger toward a backend -> HTTP 502
     └── ChargerCallFailed      an admin CALL to a charger got no answer (timeout) or the charger is gone

Codec errors (the peer sent a malformed frame) live apart in :mod:`gateway.ocpp.errors` (``FrameError``), and
store errors in :mod:`gateway.store.base` (``StoreUnavailable``).
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "BackendBusy",
    "BackendUnavailable",
    "ChargerCallFailed",
    "ChargerRejected",
    "GatewayError",
    "NoUpstreamCredentials",
    "OutOfFileDescriptors",
]


class GatewayError(Exception):
    """Base of the gateway's own errors."""


class ChargerRejected(GatewayError):
    """Refuse a charger's upgrade with ``http_status``; ``outcome`` is the bounded metric label."""

    def __init__(self, http_status: int, outcome: str, reason: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(reason)
        self.http_status = http_status
        self.outcome = outcome
        self.reason = reason
        #: extra response headers (``WWW-Authenticate`` for 401, ``Retry-After`` for 429)
        self.headers: Mapping[str, str] = headers or {}


class BackendUnavailable(GatewayError):
    """The backend could not be reached or refused the WebSocket; ``http_status`` for the charger's handshake."""

    def __init__(self, backend: str, reason: str, http_status: int = 502, refused: bool = False) -> None:
        super().__init__(f"{backend}: {reason}")
        self.backend = backend
        self.reason = reason
        self.http_status = http_status
        #: the backend answered and refused this charger (an HTTP 4xx to the upgrade, another subprotocol): it is
        #: reachable, so a ride-through route does not ride through it
        self.refused = refused


class BackendBusy(BackendUnavailable):
    """Admission pacing (``backends.<name>.max_connects_per_s``): this process opens no more links toward the backend
    now; the charger gets 503 and ``Retry-After: retry_after_s``."""

    def __init__(self, backend: str, retry_after_s: int) -> None:
        super().__init__(backend, "pacing new connections", 503)
        self.retry_after_s = retry_after_s


class OutOfFileDescriptors(BackendUnavailable):
    """The link could not open because this process has no file descriptor left (EMFILE/ENFILE): the gateway is
    full, the backend is not down (a ride-through route does not ride through it). Each charger takes two: its own
    socket and its upstream link's."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(backend, reason, 503)


class ChargerCallFailed(GatewayError):
    """A CALL the gateway sent to a charger on an operator's behalf got no answer."""


class NoUpstreamCredentials(GatewayError):
    """The gateway has no client certificate or password to present to a backend for this charger (HTTP 502 for
    the charger's handshake); ``reason`` names which, never a secret."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"{backend}: {reason}")
        self.backend = backend
        self.reason = reason
