"""OCPP versions and their WebSocket subprotocol names: the one place that knows how versions are spelled."""

from __future__ import annotations

from typing import Literal

__all__ = ["SUBPROTOCOLS", "VERSIONS", "OcppVersion", "is_v16", "parse_version", "subprotocol_of", "version_of"]

#: every OCPP version the gateway names (config ``ocpp``, ``listen.ocpp_versions``); the family decides error codes
OcppVersion = Literal["1.6", "2.0", "2.0.1", "2.1"]

#: version as written in config -> subprotocol on the wire (Sec-WebSocket-Protocol)
SUBPROTOCOLS: dict[OcppVersion, str] = {"1.6": "ocpp1.6", "2.0": "ocpp2.0", "2.0.1": "ocpp2.0.1", "2.1": "ocpp2.1"}
VERSIONS: dict[str, OcppVersion] = {v: k for k, v in SUBPROTOCOLS.items()}
_BY_NAME: dict[str, OcppVersion] = {k: k for k in SUBPROTOCOLS}


def subprotocol_of(version: OcppVersion) -> str:
    """``"1.6"`` -> ``"ocpp1.6"``."""
    return SUBPROTOCOLS[version]


def version_of(subprotocol: str) -> OcppVersion:
    """``"ocpp2.0.1"`` -> ``"2.0.1"``; KeyError for an unknown subprotocol."""
    return VERSIONS[subprotocol]


def parse_version(text: str) -> OcppVersion:
    """A version as written in a config file; ValueError for one the gateway does not name."""
    version = _BY_NAME.get(text)
    if version is None:
        raise ValueError(f"unknown OCPP version {text!r}")
    return version


def is_v16(version: str) -> bool:
    """True for the 1.x family, whose CALLERROR codes and message set differ from 2.x."""
    return version == "1.6"
