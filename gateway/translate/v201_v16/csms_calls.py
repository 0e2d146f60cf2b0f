"""CSMS-initiated CALLs of set-up B (placeholder: filled in by the CSMS-side work)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway.translate.base import Plan
from gateway.translate.v201_v16.context import Context

__all__ = ["CSMS_HANDLERS", "CSMS_POLICY"]

Handler = Callable[[Context, Mapping[str, Any]], Plan]

CSMS_HANDLERS: dict[str, Handler] = {}
#: action -> one-line policy (README table)
CSMS_POLICY: dict[str, str] = {}
