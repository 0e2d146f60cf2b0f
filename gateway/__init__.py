"""ocpp-gateway: an OCPP-J proxy and message router."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
