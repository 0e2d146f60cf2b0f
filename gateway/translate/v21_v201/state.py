"""Translation state of one 2.1 charger behind a 2.0.1 CSMS (set-up C).

Same contract as :mod:`gateway.translate.state`: plain JSON through ``to_dict()``/``from_dict()``; missing keys take
their defaults, unknown keys are ignored, so adding a field never breaks a stored state.

Almost everything of 2.1 that 2.0.1 has is the same message with the same identifiers, so there is little to keep:
the periodic event streams the CSMS accepted (opened through a wrapped OpenPeriodicEventStream), whose
NotifyPeriodicEventStream SENDs are wrapped for it; the SENDs of any other stream are dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MAX_STREAMS", "V21State"]

#: streams remembered at most (a charger opens a few; the oldest is forgotten past this)
MAX_STREAMS = 64


@dataclass(slots=True)
class V21State:
    #: ids of the periodic event streams the CSMS accepted, oldest first
    streams: list[int] = field(default_factory=list)

    def open_stream(self, stream_id: int) -> None:
        if stream_id in self.streams:
            self.streams.remove(stream_id)
        self.streams.append(stream_id)
        del self.streams[:-MAX_STREAMS]

    def close_stream(self, stream_id: int) -> None:
        if stream_id in self.streams:
            self.streams.remove(stream_id)

    def to_dict(self) -> dict[str, Any]:
        return {"streams": list(self.streams)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> V21State:
        raw = data.get("streams")
        streams = [s for s in raw if type(s) is int] if isinstance(raw, list) else []
        return cls(streams=streams[-MAX_STREAMS:])
