"""JSON text the gateway keeps holds its own size in memory, not orjson's buffer (``gateway/ocpp/jsontext.py``).

orjson (3.12 and later) returns its text in a buffer of at least ~4 kB that it never shrinks: a 200-byte record kept
by the memory store, or a transaction's text cached by a translator, would hold 4 kB each. Measured with tracemalloc,
as ``bench/idle_memory.py`` does.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

import orjson

from gateway.ocpp.jsontext import right_sized
from gateway.store.base import Write
from gateway.store.memory import MemoryStore
from gateway.translate.state import TranslationState, TxRecord


def _held(make: Callable[[], Any]) -> tuple[int, Any]:
    """Bytes still allocated once ``make()`` returned (what it made and whatever it keeps), and what it returned."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        kept = make()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    return sum(s.size_diff for s in after.compare_to(before, "filename")), kept


def test_right_sized_is_the_same_text_in_an_allocation_of_its_own_size() -> None:
    text = orjson.dumps({"a": 1, "b": "x" * 100})
    kept = right_sized(text)
    assert kept == text and kept is not text and type(kept) is bytes
    held, _ = _held(lambda: [right_sized(orjson.dumps({"i": i, "b": "x" * 100})) for i in range(500)])
    assert held / 500 < 400  # ~150 bytes of text and object; orjson's own buffer would be ~4 kB


def test_the_memory_store_keeps_a_chargers_records_at_their_size() -> None:
    store = MemoryStore()
    n = 500

    def fill() -> None:
        writes: list[Write] = []
        for i in range(n):
            cid = f"CP-{i:05d}"
            conn = {"node": "vm:1:abcdef", "since": "2026-12-02T00:00:00Z", "protocol": "ocpp1.6", "backend": "a",
                    "route": "*", "remote": "10.0.0.1"}  # fmt: skip
            boot = {"request": {"chargePointVendor": "V", "chargePointModel": "M"},
                    "response": {"status": "Accepted", "currentTime": "2026-12-02T00:00:00Z", "interval": 300},
                    "at": "2026-12-02T00:00:00Z"}  # fmt: skip
            status = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
            writes += [Write("conn", cid, "", conn), Write("boot", cid, "", boot), Write("status", cid, "1", status)]
        asyncio.run(store.apply(writes))

    held, _ = _held(fill)
    assert held / n < 2000  # three records of ~100-250 bytes; with orjson's buffers kept, over 12 kB
    assert asyncio.run(store.get_statuses("CP-00007")) == {
        "1": {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
    }


def _state() -> TranslationState:
    state = TranslationState(next_tx_int=9)
    for i in range(32):
        rec = TxRecord(f"{i:08d}-aaaa-bbbb-cccc-dddddddddddd", evse=1, connector=1, seq_no=i)
        rec.started_event = {"eventType": "Started", "timestamp": "2026-12-02T00:00:00Z", "seqNo": 0,
                             "transactionInfo": {"transactionId": rec.tx201}}  # fmt: skip
        state.transactions[i] = rec
    return state


def test_a_translation_states_cached_texts_hold_about_their_own_size() -> None:
    """A state's records keep their texts and their dicts, and the state the text of all records, until one
    changes: about three times the state's text here (each record's text, all of them together, the records'
    dicts). With orjson's buffers kept it was 18 times: 4 kB for each record's text of ~500 bytes, and the next
    power of two for the records' text."""
    size = len(_state().to_json())
    bare, _ = _held(_state)

    def with_texts() -> TranslationState:
        state = _state()
        state.to_json()
        return state

    held, _ = _held(with_texts)
    assert held - bare < 4 * size, (held - bare, size)
