#!/usr/bin/env python3
"""Compare the OCPP 2.0.1 and 2.1 JSON schemas (the ``ocpp`` package's) and write what set-up C needs to know.

Writes ``gateway/translate/v21_v201/fields.py`` (``--check``: exit 1 when the file differs from what the schemas
say; ``tests/unit/test_translate_v21_v201.py`` runs the same comparison, so a new ``ocpp`` release that changes a
schema fails the tests until the file is regenerated and the policy reviewed):

* ``V21_ONLY_ACTIONS``: actions 2.1 has and 2.0.1 has not;
* ``ADDED_FIELDS[(action, kind)]``: every property 2.1 added to a message both versions have, as a path
  (``transactionInfo.operationMode``, ``meterValue[].sampledValue[].x``), at any depth;
* ``NEW_VALUES[(action, kind)]``: every enumerated field whose 2.1 enumeration has values 2.0.1's has not
  (``path -> (new values...)``), and every field 2.1 turned from an enumeration into a free string
  (``path -> ("*",)``, e.g. ``idToken.type``), with ``V201_ENUMS[(action, kind)][path]``, 2.0.1's values;
* ``REQUIRED_ARRAYS[(action, kind)]``: the array fields 2.0.1 requires (an array emptied by dropping its 2.1-only
  items cannot simply be left out there).

Run: ``.venv/bin/python scripts/gen_v21_fields.py [--check]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "gateway" / "translate" / "v21_v201" / "fields.py"

Key = tuple[str, str]


def _schema_dir(sub: str) -> Path:
    spec = importlib.util.find_spec("ocpp")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / sub / "schemas"


def _messages(sub: str) -> dict[Key, dict[str, Any]]:
    out = {}
    for f in sorted(_schema_dir(sub).glob("*.json")):
        stem = f.stem
        kind = "response" if stem.endswith("Response") else "request"
        action = stem.removesuffix("Response").removesuffix("Request")
        out[(action, kind)] = json.loads(f.read_text(encoding="utf-8"))
    return out


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = root["definitions"][node["$ref"].rsplit("/", 1)[-1]]
    return node


class _Diff:
    def __init__(self) -> None:
        self.added: list[str] = []
        self.new_values: dict[str, tuple[str, ...]] = {}
        self.old_enums: dict[str, tuple[str, ...]] = {}
        self.required_arrays: list[str] = []

    def walk(self, a: dict[str, Any], ra: dict[str, Any], b: dict[str, Any], rb: dict[str, Any], path: str) -> None:
        a, b = _resolve(a, ra), _resolve(b, rb)
        if a.get("type") == "array" and "items" in a and "items" in b:
            self.walk(a["items"], ra, b["items"], rb, path + "[]")
            return
        if "enum" in a:
            old = tuple(sorted(a["enum"]))
            new = ("*",) if "enum" not in b else tuple(sorted(set(b["enum"]) - set(a["enum"])))
            if new:
                self.new_values[path] = new
                self.old_enums[path] = old
        props_a, props_b = a.get("properties", {}), b.get("properties", {})
        prefix = f"{path}." if path else ""
        for name in props_b:
            if name not in props_a:
                self.added.append(prefix + name)
        for name in a.get("required", []):
            if _resolve(props_a.get(name, {}), ra).get("type") == "array":
                self.required_arrays.append(prefix + name)
        for name, sub in props_a.items():
            if name in props_b and name != "customData":
                self.walk(sub, ra, props_b[name], rb, prefix + name)


def compute() -> dict[str, Any]:
    """What the schemas say, as the values of the generated module's tables."""
    old, new = _messages("v201"), _messages("v21")
    only = sorted({a for a, _ in new} - {a for a, _ in old})
    added: dict[Key, tuple[str, ...]] = {}
    new_values: dict[Key, dict[str, tuple[str, ...]]] = {}
    old_enums: dict[Key, dict[str, tuple[str, ...]]] = {}
    required: dict[Key, tuple[str, ...]] = {}
    for key in sorted(old):
        d = _Diff()
        d.walk(old[key], old[key], new[key], new[key], "")
        if d.added:
            added[key] = tuple(d.added)
        if d.new_values:
            new_values[key] = d.new_values
            old_enums[key] = d.old_enums
        if d.required_arrays:
            required[key] = tuple(d.required_arrays)
    return {
        "V21_ONLY_ACTIONS": only,
        "ADDED_FIELDS": added,
        "NEW_VALUES": new_values,
        "V201_ENUMS": old_enums,
        "REQUIRED_ARRAYS": required,
    }


def _q(value: object) -> str:
    """A string or a key tuple as Python source, in double quotes (as ruff format writes them)."""
    if isinstance(value, tuple):
        return "(" + ", ".join(_q(v) for v in value) + ")"
    return json.dumps(value)


def render(tables: dict[str, Any]) -> str:
    lines = [
        '"""What OCPP 2.1 adds to 2.0.1, message by message: GENERATED by ``scripts/gen_v21_fields.py`` from the',
        "``ocpp`` package's schemas (do not edit; ``tests/unit/test_translate_v21_v201.py`` checks it against them).",
        "",
        "See the generator's docstring for what each table holds.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        '__all__ = ["ADDED_FIELDS", "NEW_VALUES", "REQUIRED_ARRAYS", "V201_ENUMS", "V21_ONLY_ACTIONS"]',
        "",
        "# fmt: off",
        "V21_ONLY_ACTIONS: frozenset[str] = frozenset({",
        *[f"    {_q(a)}," for a in tables["V21_ONLY_ACTIONS"]],
        "})",
        "",
        "ADDED_FIELDS: dict[tuple[str, str], tuple[str, ...]] = {",
    ]
    for key, paths in tables["ADDED_FIELDS"].items():
        lines.append(f"    {_q(key)}: (")
        lines += [f"        {_q(p)}," for p in paths]
        lines.append("    ),")
    lines.append("}")
    for name in ("NEW_VALUES", "V201_ENUMS"):
        lines += ["", f"{name}: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {{"]
        for key, per_path in tables[name].items():
            lines.append(f"    {_q(key)}: {{")
            for path, values in per_path.items():
                lines.append(f"        {_q(path)}: (")
                lines += [f"            {_q(v)}," for v in values]
                lines.append("        ),")
            lines.append("    },")
        lines.append("}")
    lines += ["", "REQUIRED_ARRAYS: dict[tuple[str, str], tuple[str, ...]] = {"]
    for key, paths in tables["REQUIRED_ARRAYS"].items():
        lines.append(f"    {_q(key)}: (")
        lines += [f"        {_q(p)}," for p in paths]
        lines.append("    ),")
    lines += ["}", "# fmt: on", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when the file is not what the schemas say")
    args = ap.parse_args(argv)
    text = render(compute())
    if args.check:
        same = TARGET.exists() and TARGET.read_text(encoding="utf-8") == text
        print(f"{TARGET.relative_to(ROOT)}: {'up to date' if same else 'OUT OF DATE (run without --check)'}")
        return 0 if same else 1
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
