#!/usr/bin/env python3
"""The shared harness's CSMS stand-in (``../shared/bench/csms_stub.py``, unchanged, imported) answering as a 2.0.1
CSMS for the ``gateway-translated`` target of ``bench/compare.py``.

The shared stub accepts ``ocpp2.0.1`` and answers Heartbeat, MeterValues, StatusNotification, BootNotification (all
valid 2.0.1 answers) but not TransactionEvent, which a translating gateway sends for every 1.6 MeterValues of a
transaction (and a synthesised ``Started`` for a transaction it has not seen): this adds ``TransactionEvent -> {}``
(a valid TransactionEventResponse; every field is optional) and ``NotifyEvent -> {}``, and otherwise runs the shared
stub as it is (picows, the same per-call JSON work). Loopback only.

    .venv/bin/python bench/csms_stub_201.py --port 18002
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

SHARED = Path(os.environ.get("OCPPGW_SHARED_BENCH", Path(__file__).resolve().parents[2] / "shared" / "bench"))


def _load_shared_stub() -> Any:
    spec = importlib.util.spec_from_file_location("csms_stub", SHARED / "csms_stub.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


stub = _load_shared_stub()
_shared_answer = stub.answer
_EMPTY = {"TransactionEvent", "NotifyEvent"}


def answer(raw: bytes | str) -> bytes:
    """The shared stub's answer, but ``{}`` for a TransactionEvent or NotifyEvent CALL."""
    try:
        msg = stub._loads(raw)
    except ValueError:
        return _shared_answer(raw)
    if type(msg) is list and len(msg) == 4 and msg[0] == 2 and type(msg[1]) is str and msg[2] in _EMPTY:
        stub.STATS["calls"] += 1
        return stub._dumps([3, msg[1], {}])
    return _shared_answer(raw)


stub.answer = answer  # serve_picows looks it up as a module global at each frame

if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    sys.argv[0] = str(SHARED / "csms_stub.py")
    asyncio.run(stub.main())
