"""Set-up B internals: 2.0.1 charger behind a 1.6 CSMS. The public entry point is
:class:`gateway.translate.v201_to_v16.V201ChargerToV16Csms`; the modules here hold its parts:

* ``state``: the persisted :class:`ReverseState` (transactions keyed by the charger's string id);
* ``context``: options (``backends.<name>.translation``) and the shared :class:`Context`;
* ``meter``: 2.0.1 SampledValueType -> 1.6 SampledValue (§4.3);
* ``transactions``: TransactionEvent -> StartTransaction / MeterValues / StatusNotification / StopTransaction,
  StatusNotification (§4.1, §4.2);
* ``charger_calls``: the other charger-initiated CALLs, messages without counterpart (§5.2) and the dispatch table
  of that direction;
* ``csms_calls``: the 1.6 CSMS's CALLs toward the 2.0.1 charger (§4.4) and their dispatch table.
"""

from __future__ import annotations

__all__: list[str] = []
