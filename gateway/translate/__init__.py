"""Translators between OCPP versions (pure). See :mod:`gateway.translate.base`."""

from __future__ import annotations

__all__: list[str] = []
