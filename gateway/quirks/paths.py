"""Paths into OCPP payloads, and what the official schema says is at a path. Pure.

A path is ``$`` followed by steps: ``.key`` (a field of an object) or ``[*]`` (every element of an array), e.g.
``$.meterValue[*].sampledValue[*].unit``. A profile rule's path ends in a key (the field it repairs). The schema
validator reports concrete paths (``$.meterValue[0].sampledValue[1].unit``); :func:`normalise` turns them into the
rule form, so that every violation of one field counts as one.

:func:`locate` walks a schema document (``$ref`` to ``#/definitions/...`` followed, as the 2.0.1 and 2.1 schemas use
them) along a path and returns what is there: the field's own schema (None when the schema has no such field: an
extra field), its parent object's schema, and whether the parent requires it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Step", "Target", "format_path", "locate", "normalise", "parse_path", "resolve", "value_at"]

#: a key, or None for ``[*]``
Step = str | None

_STEP = re.compile(r"\.([A-Za-z0-9_]+)|\[\*\]")
_INDEX = re.compile(r"\[\d+\]")


def parse_path(text: str) -> tuple[Step, ...]:
    """The steps of ``text`` (``$.a[*].b`` -> ``("a", None, "b")``); ValueError saying what is wrong."""
    if not isinstance(text, str) or not text.startswith("$"):
        raise ValueError("a path starts with $ (e.g. $.meterValue[*].sampledValue[*].unit)")
    steps: list[Step] = []
    pos = 1
    while pos < len(text):
        m = _STEP.match(text, pos)
        if m is None:
            raise ValueError(f"cannot read {text[pos:]!r}: steps are .field or [*]")
        steps.append(m.group(1))
        pos = m.end()
    return tuple(steps)


def format_path(steps: tuple[Step, ...]) -> str:
    return "$" + "".join("[*]" if s is None else f".{s}" for s in steps)


def normalise(path: str) -> str:
    """A validator's concrete path in rule form: array indices become ``[*]``."""
    return _INDEX.sub("[*]", path)


def value_at(payload: Any, path: str) -> tuple[bool, Any]:
    """The value at a concrete path (``$.a[0].b``): (found, value)."""
    node = payload
    for m in re.finditer(r"\.([^.\[]+)|\[(\d+)\]", path[1:]):
        key, index = m.group(1), m.group(2)
        if key is not None:
            if not isinstance(node, dict) or key not in node:
                return False, None
            node = node[key]
        else:
            i = int(index)
            if not isinstance(node, list) or i >= len(node):
                return False, None
            node = node[i]
    return True, node


def resolve(root: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    """``node`` with its ``$ref`` (``#/definitions/Name`` of ``root``) followed."""
    seen = 0
    while "$ref" in node:
        ref = node["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/definitions/") or seen > 16:
            raise ValueError(f"unsupported $ref {ref!r}")
        node = root.get("definitions", {})[ref.removeprefix("#/definitions/")]
        seen += 1
    return node


@dataclass(frozen=True, slots=True)
class Target:
    """What the schema says is at a path that ends in a key."""

    #: the field's schema ($ref followed); None: the parent object has no such property (an extra field)
    schema: Mapping[str, Any] | None
    #: the schema of the object that holds the field
    parent: Mapping[str, Any]
    key: str
    #: the parent requires the field
    required: bool
    #: the path goes through an array (``[*]``)
    in_array: bool


def locate(root: Mapping[str, Any], steps: tuple[Step, ...]) -> Target:
    """Walk ``root`` (a schema document) along ``steps`` (ending in a key). ValueError naming the first step the
    schema does not have (only the last key may be missing: that is an extra field)."""
    if not steps or steps[-1] is None:
        raise ValueError("a rule's path ends in a field name ($.a.b, not $.a[*])")
    node = resolve(root, root)
    walked: list[Step] = []
    in_array = False
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        here = format_path(tuple(walked))
        if step is None:
            if node.get("type") != "array" or "items" not in node:
                raise ValueError(f"{here} is not an array in the schema")
            node = resolve(root, node["items"])
            in_array = True
        else:
            props = node.get("properties")
            if node.get("type") != "object" or not isinstance(props, dict):
                raise ValueError(f"{here} is not an object in the schema")
            if step not in props:
                if last:
                    return Target(None, node, step, False, in_array)
                raise ValueError(f"the schema has no field {step!r} at {here} (fields: {', '.join(sorted(props))})")
            child = resolve(root, props[step])
            if last:
                return Target(child, node, step, step in node.get("required", ()), in_array)
            node = child
        walked.append(step)
    raise AssertionError("unreachable: the last step is a key")
