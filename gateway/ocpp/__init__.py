"""Pure OCPP-J codec: frames, error codes per version, subprotocols, schema validation. No I/O."""

from __future__ import annotations

__all__: list[str] = []
