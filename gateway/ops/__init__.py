"""Running it: the lifecycle, the admin API, the CLI, worker processes, certificate checks, the demo."""

from __future__ import annotations

__all__: list[str] = []
