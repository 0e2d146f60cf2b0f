#!/usr/bin/env python3
"""What finding duplicate JSON keys costs per frame, against the gateway's whole pass-through round trip.

orjson keeps the last value of a repeated key and says nothing, so any check is extra work on a frame already
parsed. Candidates, each timed with ``timeit`` (best of 7) on one ~500-byte 1.6 MeterValues CALL (three sampled
values, the load generator's mix, ``bench/translate_cost.py``):

* ``key_regex``: the key tokens ``"(?:[^"\\]|\\.)*"\\s*:`` counted over the raw bytes against the keys parsed
  (a walk of the parsed payload). Unsound: a match may start at a closing quote (``["a",":"]`` counts a key).
* ``token_regex``: every string token, left to right, counting those a ``:`` follows, against the keys parsed
  (sound on valid JSON; the codec's slow path for frames with ``\\u`` escapes).
* ``pairs_hook``: ``json.loads(raw, object_pairs_hook=...)``, a second parse that sees every pair.
* ``has_duplicate_keys``: the codec's check (fast path): the colons of the raw bytes against those of orjson's
  re-serialisation of what was parsed.

For scale: ``orjson.loads`` of the frame, ``parse_frame`` (what the gateway pays for every frame anyway), and the
pass-through session's CPU per round trip (``translate_cost.run``: a CALL in, out, its answer in, out).

Output: one JSON line, then one line per candidate for humans.
Run: ``.venv/bin/python bench/duplicate_keys.py [--iterations N]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson
from translate_cost import meter_payloads_16, run

from gateway.ocpp.frames import Call, has_duplicate_keys, parse_frame

KEY_REGEX = re.compile(rb'"(?:[^"\\]|\\.)*"\s*:')
TOKEN_REGEX = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"(\s*:)?', re.DOTALL)


def count_keys(value: object) -> int:
    n, todo = 0, [value]
    while todo:
        v = todo.pop()
        if type(v) is dict:
            n += len(v)
            todo.extend(v.values())
        elif type(v) is list:
            todo.extend(v)
    return n


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise ValueError("duplicate key")
    return d


def candidates(raw: bytes, frame: Call) -> dict[str, Callable[[], object]]:
    payload = frame.payload
    return {
        "key_regex": lambda: len(KEY_REGEX.findall(raw)) != count_keys(payload),
        "token_regex": lambda: sum(1 for c in TOKEN_REGEX.findall(raw) if c) != count_keys(payload),
        "pairs_hook": lambda: json.loads(raw, object_pairs_hook=_unique_pairs),
        "has_duplicate_keys": lambda: has_duplicate_keys(frame),
        "orjson_loads": lambda: orjson.loads(raw),
        "parse_frame": lambda: parse_frame(raw),
    }


def best_us(fn: Callable[[], object]) -> float:
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    return min(timer.repeat(7, number)) / number * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=5000, help="round trips per repeat of the session figure")
    args = ap.parse_args()
    payload = meter_payloads_16(random.Random(1000), 8, lambda connector: 5000 + connector)[1]
    raw = json.dumps([2, "c1234", "MeterValues", payload], separators=(",", ":")).encode()
    frame = parse_frame(raw)
    assert isinstance(frame, Call) and not has_duplicate_keys(frame)
    assert len(KEY_REGEX.findall(b'{"k":["a",":"]}')) == 2  # key_regex's false positive
    times = {name: round(best_us(fn), 3) for name, fn in candidates(raw, frame).items()}
    session = run("A", False, args.iterations, 5, 0)["us_per_rt"]
    result = {"bench": "duplicate_keys", "frame_bytes": len(raw), "us_per_frame": times,
              "passthrough_us_per_rt": round(session, 2), "python": platform.python_version()}  # fmt: skip
    print(json.dumps(result, separators=(",", ":")))
    for name, us in times.items():
        print(f"{name:20s} {us:7.3f} us per frame  ({us / session:6.1%} of a pass-through round trip)")
    print(f"pass-through session {session:7.2f} us per round trip, {len(raw)}-byte MeterValues CALL", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
