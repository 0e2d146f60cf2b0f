"""The compliance report: the store's counters per charger model, summarised, with a suggested profile rule for each
recurring violation. Pure (``ocpp-gateway report compliance`` and ``GET /api/compliance`` read the store and call
:func:`build`).

Per vendor/model/firmware: chargers seen, frames they sent (``messages``), frames checked against their schema
(``checked``: by ``validate_schemas``, a translated session, or ``compliance.sample_rate``), the violations by
message, path and kind (``repaired`` by a rule of the charger's profile, ``unrepaired``: the frame still failed), the
repairs applied (per rule: values changed, of which violations), and ``suggestions``: for every unrepaired violation
seen at least ``min_count`` times whose kind a repair fits (gateway/quirks/violations.py), a rule, and per model and
OCPP version a profile in YAML to review and add under ``quirks.profiles``. Each suggested rule is one the config
accepts (it is read back through the config's parser before it is offered); a ``map`` target is a guess (the schema's
``Other…`` value, else a value that contains the offending one, else the closest spelling), a ``default`` value a
placeholder: both are marked for review in the YAML.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

import orjson
import yaml

from gateway.ocpp import schemas
from gateway.quirks.paths import locate, parse_path
from gateway.quirks.profile import parse_quirks

__all__ = ["build", "render_text"]

#: the kind of violation each repair fixes (for repaired violations, whose kind is the rule's)
_KIND_OF_REPAIR = {"enum_case": "enum", "map": "enum", "coerce": "type", "timestamp": "format", "truncate": "length",
                   "alias": "length", "drop": "invalid", "rename": "extra", "default": "missing"}  # fmt: skip


def build(models: Mapping[tuple[str, str, str], Any], *, min_count: int = 3) -> dict[str, Any]:
    """The report of ``models`` (model -> an object with ``chargers`` and ``counts``, as the store reads them)."""
    out = []
    for (vendor, model, firmware), rec in sorted(models.items()):
        out.append(_model(vendor, model, firmware, int(rec.chargers), dict(rec.counts), min_count))
    return {"models": out, "min_count": min_count}


def _model(vendor: str, model: str, firmware: str, chargers: int, counts: dict[str, int],
           min_count: int) -> dict[str, Any]:  # fmt: skip
    violations: dict[tuple[str, ...], dict[str, Any]] = {}
    repairs: dict[tuple[str, ...], dict[str, Any]] = {}
    other = 0
    for name, n in counts.items():
        try:
            key = orjson.loads(name)
        except orjson.JSONDecodeError:
            other += n
            continue
        if not isinstance(key, list) or not key or not all(isinstance(k, str) for k in key):
            other += n
            continue
        tag, rest = key[0], key[1:]
        if tag == "v" and len(rest) == 8:
            version, direction, message, action, path, kind, hint, value = rest
            v = _violation(violations, version, direction, message, action, path, kind)
            v["unrepaired"] += n
            v["hint"] = hint or v["hint"]
            if value:
                v["values"][value] = v["values"].get(value, 0) + n
        elif tag in ("r", "f") and len(rest) == 8:
            version, profile, rule, direction, message, action, path, repair = rest
            fields = {"ocpp": version, "profile": profile, "rule": rule, "direction": direction, "message": message,
                      "action": action, "path": path, "repair": repair, "values": 0, "violations": 0}  # fmt: skip
            r = repairs.setdefault(tuple(rest), fields)
            if tag == "r":
                r["values"] += n
            else:
                r["violations"] += n
                v = _violation(violations, version, direction, message, action, path, _KIND_OF_REPAIR[repair])
                v["repaired"] += n
        elif key not in (["messages"], ["checked"]):
            other += n
    listed = sorted(violations.values(), key=lambda v: (-(v["repaired"] + v["unrepaired"]), v["action"], v["path"]))
    for v in listed:
        v["count"] = v["repaired"] + v["unrepaired"]
        if not v["values"]:
            del v["values"]
    body: dict[str, Any] = {
        "vendor": vendor, "model": model, "firmware": firmware, "chargers": chargers,
        "messages": counts.get('["messages"]', 0), "checked": counts.get('["checked"]', 0),
        "violations": listed, "repairs": sorted(repairs.values(), key=lambda r: (r["profile"], r["rule"])),
    }  # fmt: skip
    if other:
        body["other_counters"] = other
    body["suggestions"] = _suggest(vendor, model, firmware, listed, min_count)
    return body


def _violation(table: dict[tuple[str, ...], dict[str, Any]], version: str, direction: str, message: str,
               action: str, path: str, kind: str) -> dict[str, Any]:  # fmt: skip
    key = (version, direction, message, action, path, kind)
    v = table.get(key)
    if v is None:
        v = table[key] = {"ocpp": version, "direction": direction, "message": message, "action": action,
                          "path": path, "kind": kind, "hint": "", "repaired": 0, "unrepaired": 0,
                          "values": {}}  # fmt: skip
    return v


def _suggest(vendor: str, model: str, firmware: str, violations: list[dict[str, Any]],
             min_count: int) -> list[dict[str, Any]]:  # fmt: skip
    by_version: dict[str, list[tuple[dict[str, Any], int, list[str]]]] = {}
    for v in violations:
        if v["unrepaired"] < min_count or not v["hint"]:
            continue
        made = _rule(v)
        if made is None:
            continue
        rule, review = made
        by_version.setdefault(v["ocpp"], []).append((rule, v["unrepaired"], review))
    out = []
    for version, rules in sorted(by_version.items()):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{vendor}-{model}-{version}".lower()).strip("-")[:64] or "model"
        profile = {"name": name, "ocpp": version, "match": {"vendor": vendor, "model": model},
                   "rules": [r for r, _, _ in rules]}  # fmt: skip
        _, problems = parse_quirks({"profiles": [profile]})
        bad = {int(m.group(1)) for w, _ in problems if (m := re.search(r"rules\[(\d+)\]", w)) is not None}
        rules = [r for i, r in enumerate(rules) if i not in bad]
        if not rules:
            continue
        profile["rules"] = [r for r, _, _ in rules]
        text = yaml.safe_dump([profile], sort_keys=False, default_flow_style=None, width=200)
        for rule, count, review in rules:
            note = f"  # {count} violations" + (f"; review: {', '.join(review)}" if review else "")
            text = _annotate(text, rule["name"], note)
        header = (f"# suggested for {vendor} {model} (firmware {firmware or '?'} seen), OCPP {version}: review, then "
                  "add under quirks.profiles\n")  # fmt: skip
        out.append({"ocpp": version, "profile": profile, "yaml": header + text,
                    "violations": sum(c for _, c, _ in rules)})  # fmt: skip
    return out


def _annotate(text: str, name: str, note: str) -> str:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if f"name: {name}" in line:
            j = i
            while j + 1 < len(lines) and not lines[j + 1].lstrip().startswith("- "):
                j += 1
            lines[j] += note
            break
    return "\n".join(lines) + "\n"


def _rule(v: dict[str, Any]) -> tuple[dict[str, Any], list[str]] | None:
    """A rule for a violation's hint, and what the operator must review in it."""
    hint, path = v["hint"], v["path"]
    last = path.rsplit(".", 1)[-1]
    rule: dict[str, Any] = {"name": f"{v['action']}-{last}-{hint}".replace("_", "-"), "action": v["action"],
                            "direction": v["direction"], "message": v["message"], "path": path,
                            "repair": hint}  # fmt: skip
    review: list[str] = []
    if hint in ("map", "default"):
        sub = _schema_at(v["ocpp"], v["action"], v["message"], path)
        enum = [e for e in (sub or {}).get("enum", []) if isinstance(e, str)]
        if hint == "map":
            seen = sorted(v.get("values", {}), key=lambda x: -v["values"][x])
            if not seen or not enum:
                return None
            values = {value: _nearest(value, enum) for value in seen[:5]}
            rule["values"] = values
            review.append("the map targets (nearest spelling)")
        else:
            if sub is None:
                return None
            rule["value"] = ("Unknown" if "Unknown" in enum else enum[0]) if enum else _placeholder(sub)
            review.append("the default value")
    return rule, review


def _nearest(value: str, enum: list[str]) -> str:
    """The enumeration value to suggest for ``value``: the catch-all ``Other…`` value when there is one (a spelling
    close to the value can mean the opposite: Error ~ NoError), else one that contains it (or it contains), else the
    closest spelling."""
    other = [e for e in enum if e.startswith("Other")]
    if other:
        return other[0]
    low = value.lower()
    for e in enum:
        if low and (low in e.lower() or e.lower() in low):
            return e
    near = difflib.get_close_matches(value, enum, n=1, cutoff=0.0)
    return near[0] if near else enum[0]


def _placeholder(sub: Mapping[str, Any]) -> Any:
    kind = sub.get("type")
    return {"string": "unknown", "integer": 0, "number": 0, "boolean": False}.get(str(kind))


def _schema_at(version: str, action: str, message: str, path: str) -> Mapping[str, Any] | None:
    try:
        root = schemas.document(version, action, "request" if message == "call" else "response")
        return locate(root, parse_path(path)).schema
    except (schemas.UnknownAction, ValueError):
        return None


def render_text(report: Mapping[str, Any]) -> str:
    """The report for a terminal."""
    lines: list[str] = []
    if not report["models"]:
        return "no charger model in the compliance report yet (is compliance: on, and has a flush happened?)\n"
    for m in report["models"]:
        lines.append(f"{m['vendor']} / {m['model']} / firmware {m['firmware'] or '?'}: {m['chargers']} charger(s), "
                     f"{m['messages']} messages, {m['checked']} checked")  # fmt: skip
        for v in m["violations"]:
            values = f" values {v['values']}" if v.get("values") else ""
            lines.append(f"  violation  {v['count']:>6}  {v['action']} {v['message']} {v['path']} ({v['kind']}): "
                         f"{v['repaired']} repaired, {v['unrepaired']} not{values}")  # fmt: skip
        for r in m["repairs"]:
            lines.append(f"  repair     {r['values']:>6}  {r['profile']}/{r['rule']}: {r['repair']} {r['action']} "
                         f"{r['path']} ({r['violations']} violations)")  # fmt: skip
        for s in m["suggestions"]:
            lines.append("")
            lines.extend("  " + line for line in s["yaml"].rstrip().splitlines())
        lines.append("")
    return "\n".join(lines)
