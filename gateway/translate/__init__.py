"""Translators between OCPP versions (pure). See :mod:`gateway.translate.base`."""

from __future__ import annotations

from gateway.translate.base import Translator

__all__ = ["TRANSLATABLE", "translator_for"]

#: (charger version, backend version) pairs the gateway can translate
TRANSLATABLE = frozenset({("1.6", "2.0.1")})


def translator_for(charger_version: str, backend_version: str, session_started_at: str | None = None) -> Translator:
    """A fresh translator for this pair (KeyError when there is none)."""
    if (charger_version, backend_version) == ("1.6", "2.0.1"):
        from gateway.translate.v16_to_v201 import V16ChargerToV201Csms

        return V16ChargerToV201Csms(session_started_at=session_started_at)
    raise KeyError((charger_version, backend_version))
