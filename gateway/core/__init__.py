"""The OCPP-J core, sans-I/O: the call lane, the plan driver, the charger session, password rotation."""

from __future__ import annotations

__all__: list[str] = []
