"""Charger-initiated CALLs of set-up B (placeholder: filled in by the charger-side work)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway.translate.base import Plan
from gateway.translate.v201_v16.context import Context

__all__ = ["CHARGER_HANDLERS", "CHARGER_POLICY"]

Handler = Callable[[Context, Mapping[str, Any]], Plan]

CHARGER_HANDLERS: dict[str, Handler] = {}
#: action -> one-line policy (README table)
CHARGER_POLICY: dict[str, str] = {}
