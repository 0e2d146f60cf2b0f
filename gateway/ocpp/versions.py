"""OCPP versions and their WebSocket subprotocol names."""

from __future__ import annotations

from typing import Literal

__all__ = ["SUBPROTOCOLS", "VERSIONS", "OcppVersion", "subprotocol_of", "version_of"]

OcppVersion = Literal["1.6", "2.0", "2.0.1", "2.1"]

#: version as written in config -> subprotocol on the wire (Sec-WebSocket-Protocol)
SUBPROTOCOLS: dict[str, str] = {"1.6": "ocpp1.6", "2.0": "ocpp2.0", "2.0.1": "ocpp2.0.1", "2.1": "ocpp2.1"}
VERSIONS: dict[str, str] = {v: k for k, v in SUBPROTOCOLS.items()}


def subprotocol_of(version: str) -> str:
    """``"1.6"`` -> ``"ocpp1.6"``."""
    return SUBPROTOCOLS[version]


def version_of(subprotocol: str) -> str:
    """``"ocpp2.0.1"`` -> ``"2.0.1"``; KeyError for an unknown subprotocol."""
    return VERSIONS[subprotocol]


def is_v16(version: str) -> bool:
    """True for the 1.x family, whose error codes differ from 2.x."""
    return version.startswith("1.")
