"""JSON text that is kept: orjson's output, right-sized.

``orjson.dumps`` (3.12 and later) writes into a buffer of at least ~4 kB, growing by powers of two, and never gives
back what it did not use: a 100-byte text holds 4 kB of memory for as long as it is kept, a 22 kB one 32 kB
(``sys.getsizeof`` shows only the text; tracemalloc shows the allocation). Text that lives on (a store's records, a
translator's cached snapshots) is copied once into a bytes object of its own size; text that is sent and dropped is
not.
"""

from __future__ import annotations

__all__ = ["right_sized"]


def right_sized(text: bytes) -> bytes:
    """``text`` in an allocation of its own size (a copy: ``bytes(text)`` would return the same object)."""
    return bytes(memoryview(text))
