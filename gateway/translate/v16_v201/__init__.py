"""Set-up A internals: 1.6 charger behind a 2.0.1 CSMS. The public entry point is
:class:`gateway.translate.v16_to_v201.V16ChargerToV201Csms`; the modules here hold its parts:

* ``context``: options (charger capabilities), the shared :class:`Context` (state, clock, id helpers, EVSE map);
* ``meter``: 1.6 SampledValue -> 2.0.1 SampledValueType;
* ``transactions``: StatusNotification, StartTransaction, MeterValues, StopTransaction;
* ``charger_calls``: the other charger-initiated CALLs and the dispatch table of that direction;
* ``config_keys`` / ``device_model``: configuration keys <-> device model, Get/SetVariables, reports;
* ``smart_charging``: charging profiles and composite schedules;
* ``csms_calls``: the other CSMS-initiated CALLs and the dispatch table of that direction;
* ``policy``: messages without counterpart and the machine-readable ``POLICY`` table.
"""

from __future__ import annotations

__all__: list[str] = []
