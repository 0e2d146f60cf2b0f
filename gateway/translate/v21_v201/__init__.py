"""Set-up C: an OCPP 2.1 charger behind a 2.0.1 CSMS (:mod:`gateway.translate.v21_to_v201`).

``fields`` (generated from the schemas: what 2.1 adds), ``rules`` (what becomes of it), ``policy`` (every message,
the 2.1-only ones included), ``state``.
"""

from __future__ import annotations

__all__: list[str] = []
