"""The compliance report's counters: per charger model, fleet-wide, in the store (gateway/store/keys.py).

Every replica adds its counts behind, in batches (gateway/app/quirks.py ``ComplianceRecorder``), never on the message
path: :meth:`ComplianceCounters.add` takes, per model (vendor, model, firmware as the charger said them), the
charger ids seen and increments of named counters. A counter's name is the JSON text of a tuple (``["messages"]``,
``["checked"]``, a violation's or a repair's fields: gateway/core/quirks.py). A model keeps at most ``max_fields``
counters; increments of further ones go to :data:`OVERFLOW` (a charger inventing field names cannot grow the store
without bound). :meth:`ComplianceCounters.read` gives every model's charger count and counters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["ALWAYS", "OVERFLOW", "ComplianceCounters", "MemoryCompliance", "ModelCounts", "ModelKey", "ModelReport"]

#: vendor, model, firmware
ModelKey = tuple[str, str, str]
#: where increments of counters over a model's bound go
OVERFLOW = '["other"]'
#: counters kept whatever the bound
ALWAYS = frozenset({'["messages"]', '["checked"]'})


@dataclass(slots=True)
class ModelCounts:
    """What one batch adds for one model."""

    chargers: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, n: int) -> None:
        self.counts[name] = self.counts.get(name, 0) + n


@dataclass(frozen=True, slots=True)
class ModelReport:
    """What the store holds for one model."""

    chargers: int
    counts: Mapping[str, int]


class ComplianceCounters(Protocol):
    async def add(self, batch: Mapping[ModelKey, ModelCounts], max_fields: int) -> None:
        """Add a batch (one round trip where the store allows). Raises StoreUnavailable."""
        ...

    async def read(self) -> dict[ModelKey, ModelReport]: ...

    async def clear(self) -> None:
        """Forget every model (``report compliance --reset``)."""
        ...


class MemoryCompliance:
    """One process's counters (the memory store)."""

    def __init__(self) -> None:
        self._chargers: dict[ModelKey, set[str]] = {}
        self._counts: dict[ModelKey, dict[str, int]] = {}

    async def add(self, batch: Mapping[ModelKey, ModelCounts], max_fields: int) -> None:
        for model, delta in batch.items():
            self._chargers.setdefault(model, set()).update(delta.chargers)
            counts = self._counts.setdefault(model, {})
            for name, n in delta.counts.items():
                if name not in counts and name not in ALWAYS and len(counts) >= max_fields:
                    name = OVERFLOW
                counts[name] = counts.get(name, 0) + n

    async def read(self) -> dict[ModelKey, ModelReport]:
        models = set(self._chargers) | set(self._counts)
        return {m: ModelReport(len(self._chargers.get(m, ())), dict(self._counts.get(m, {}))) for m in models}

    async def clear(self) -> None:
        self._chargers.clear()
        self._counts.clear()
