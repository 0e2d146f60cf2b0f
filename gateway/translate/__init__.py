"""Translators between OCPP versions (pure). See :mod:`gateway.translate.base`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.translate.base import Translator

__all__ = ["TRANSLATABLE", "translator_for"]

#: (charger version, backend version) pairs the gateway can translate
TRANSLATABLE = frozenset({("1.6", "2.0.1"), ("2.0.1", "1.6"), ("2.1", "2.0.1")})


def translator_for(
    charger_version: str,
    backend_version: str,
    session_started_at: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> Translator:
    """A fresh translator for this pair (KeyError when there is none).

    ``options`` is the backend's ``translation`` section of the config (set-up B: 2.0.1 chargers, 1.6 backend).
    Set-up C (2.1 chargers, 2.0.1 backend) takes no options.
    """
    if (charger_version, backend_version) == ("1.6", "2.0.1"):
        from gateway.translate.v16_to_v201 import V16ChargerToV201Csms

        return V16ChargerToV201Csms(session_started_at=session_started_at)
    if (charger_version, backend_version) == ("2.0.1", "1.6"):
        from gateway.translate.v201_to_v16 import Options, V201ChargerToV16Csms

        return V201ChargerToV16Csms(Options.from_mapping(options), session_started_at=session_started_at)
    if (charger_version, backend_version) == ("2.1", "2.0.1"):
        from gateway.translate.v21_to_v201 import V21ChargerToV201Csms

        return V21ChargerToV201Csms(session_started_at=session_started_at)
    raise KeyError((charger_version, backend_version))
