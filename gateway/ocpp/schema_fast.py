"""Quick schema checks in front of the full validators (:mod:`gateway.ocpp.schemas`). Pure: no I/O.

Every validation of a translated round trip runs on input that is almost always valid, and the full validators
(``fastjsonschema``) were ~14-20 % of a translated round trip in process (py-spy over ``bench/translate_cost.py``:
a 1.6 MeterValues ~30 µs, a 2.0.1 TransactionEvent ~67 µs on the 2-core VM): an enumeration is a chain of
``isinstance(x, str) and x == 'A' or …`` (22 terms for a measurand), every object's keys are copied into a set and
removed one by one, every check is written for types orjson never produces (tuples, Decimals, bools as ints).

:func:`compile_check` turns one schema into a function that answers only **True: certainly valid** or **False: not
sure**. The caller runs the full validator whenever it gets False, so every verdict of invalidity, its path, its
message and the CALLERROR chosen from it stay the full validator's, exactly as before; the quick check only has to
accept nothing the full validator would refuse. It is therefore written to be narrower, never wider:

* types are tested with ``type(x) is …`` for what orjson builds (``dict``, ``list``, ``str``, ``int``, ``float``,
  ``bool``): a 2.0.1 integral float (draft-06 takes ``3.0`` for an ``integer``), a tuple, a subclass, a Decimal go
  to the full validator;
* ``enum`` of strings is a frozenset lookup, ``required`` and ``additionalProperties: false`` one set comparison
  each on the dict's keys, ``maxLength``/``minLength``/``minItems``/``maxItems``/``minimum``/``maximum`` the same
  comparisons ``fastjsonschema`` makes (written so that NaN is "not sure"), ``format`` the same regular expression
  ``fastjsonschema`` uses for that format (a format it does not know it ignores, and so does this);
* ``$ref`` (``#/definitions/…``) is followed and inlined (siblings ignored, as ``fastjsonschema`` does);
  annotations (``title``, ``description``, ``javaType``, ``default``: validators are compiled with
  ``use_default=False``) change nothing;
* a keyword this module does not implement (``multipleOf``, ``pattern``, ``items`` as a list, ``anyOf``, a schema
  as ``additionalProperties``, an exclusive bound, a ``type`` list, a non-string ``enum``, a recursive ``$ref``)
  makes the value it applies to "not sure" whenever it is present: correct, only not quick.

``tests/unit/test_schema_fast.py`` checks, for every schema of every version, that random instances and mutations of
them the quick check accepts are accepted by the full validator, and that it accepts the valid ones of the hot
messages (so that the full validator stays the exception).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from fastjsonschema.draft04 import CodeGeneratorDraft04
from fastjsonschema.draft06 import CodeGeneratorDraft06

__all__ = ["Check", "compile_check"]

Check = Callable[[Any], bool]

#: keywords that validate nothing (with ``use_default=False``)
_ANNOTATIONS = frozenset(
    {"$schema", "$id", "id", "title", "description", "comment", "$comment", "javaType", "default", "definitions"}
)
#: keywords that apply to values of one JSON type only (fastjsonschema guards each with an isinstance check): under
#: a ``type`` of another JSON type they are no-ops
_FOR_TYPE = {
    "object": frozenset({"properties", "required", "additionalProperties"}),
    "array": frozenset({"items", "additionalItems", "minItems", "maxItems"}),
    "string": frozenset({"maxLength", "minLength", "format"}),
    "number": frozenset({"minimum", "maximum"}),
}
_TYPE_SPECIFIC = frozenset().union(*_FOR_TYPE.values())
_PY_TYPES = {"object": "dict", "array": "list", "string": "str", "integer": "int", "boolean": "bool"}


#: what an absent optional property reads as
_MISSING = object()


class _NotQuick(Exception):
    """A construct this module does not check: the value it applies to is "not sure"."""


def _format_regexes(draft: str) -> Mapping[str, str]:
    return CodeGeneratorDraft04.FORMAT_REGEXS if draft == "04" else CodeGeneratorDraft06.FORMAT_REGEXS


def _draft(schema: Mapping[str, Any]) -> str:
    uri = str(schema.get("$schema", ""))
    if "draft-04" in uri:
        return "04"
    if "draft-06" in uri:
        return "06"
    raise _NotQuick(f"unsupported $schema {uri!r}")  # fastjsonschema would pick another generator


class _Writer:
    """Writes the body of one check: per value, one ``if <failures>: return False`` line for what it can tell from
    the value itself (type, enum, lengths, format, bounds, required and allowed keys), then the blocks of its
    properties and items."""

    def __init__(self, root: Mapping[str, Any], draft: str) -> None:
        self.root = root
        self.formats = _format_regexes(draft)
        self.lines: list[str] = []
        self.consts: dict[str, Any] = {}
        self.n = 0

    def const(self, value: Any) -> str:
        name = f"_c{len(self.consts)}"
        self.consts[name] = value
        return name

    def var(self) -> str:
        self.n += 1
        return f"v{self.n}"

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def resolve(self, schema: object, refs: tuple[str, ...]) -> tuple[Mapping[str, Any] | None, tuple[str, ...]]:
        """``schema`` with its ``$ref`` followed (siblings are ignored, as fastjsonschema ignores them); None for
        ``true`` (anything goes)."""
        while True:
            if schema is True:
                return None, refs
            if not isinstance(schema, Mapping):
                raise _NotQuick("schema is not an object")
            if "$ref" not in schema:
                return schema, refs
            ref = schema["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#/definitions/") or ref in refs:
                raise _NotQuick(f"$ref {ref!r}")
            schema = self.root.get("definitions", {}).get(ref.removeprefix("#/definitions/"))
            refs = (*refs, ref)

    def value(self, schema: object, var: str, depth: int, refs: tuple[str, ...]) -> None:
        """Lines that ``return False`` unless ``var`` certainly conforms to ``schema``."""
        start = len(self.lines)
        try:
            resolved, refs = self.resolve(schema, refs)
            if resolved is None:
                return
            failures = self.failures(resolved, var)
            if failures:
                self.emit(depth, f"if {' or '.join(failures)}: return False")
            self.nested(resolved, var, depth, refs)
        except _NotQuick:
            del self.lines[start:]
            self.emit(depth, "return False")

    def failures(self, schema: Mapping[str, Any], var: str) -> list[str]:
        """Conditions on ``var`` itself, any of which makes it "not sure", the type first (the others assume it)."""
        keys = schema.keys() - _ANNOTATIONS
        t = schema.get("type")
        if t is None:
            if keys - {"enum"}:
                raise _NotQuick(f"keywords without a type: {sorted(keys)}")
        elif not isinstance(t, str) or (t not in _PY_TYPES and t != "number"):
            raise _NotQuick(f"type {t!r}")
        unknown = keys - {"type", "enum"} - _TYPE_SPECIFIC
        if unknown:
            raise _NotQuick(f"keywords {sorted(unknown)}")
        own = keys & _FOR_TYPE.get("number" if t == "integer" else str(t), frozenset())
        out: list[str] = []
        if "enum" in keys:
            if t not in (None, "string"):
                raise _NotQuick("enum on a non-string type")
            # a frozenset of strings holds no value of another type (an unhashable one raises TypeError: the check
            # catches it, "not sure"), so the membership is the type check too
            out.append(f"{var} not in {self.const(_strings(schema['enum']))}")
        elif t == "number":
            out.append(f"(type({var}) is not int and type({var}) is not float)")
        elif t is not None:
            out.append(f"type({var}) is not {_PY_TYPES[t]}")
        if "required" in own:
            required = schema["required"]
            if not isinstance(required, list) or not all(isinstance(k, str) for k in required):
                raise _NotQuick("required")
            if required:
                out.append(f"not {var}.keys() >= {self.const(frozenset(required))}")
        if "additionalProperties" in own:
            extra = schema["additionalProperties"]
            if extra is False:
                out.append(f"not {var}.keys() <= {self.const(frozenset(schema.get('properties', {})))}")
            elif extra is not True and extra != {}:
                raise _NotQuick("additionalProperties schema")
        if "items" in own and not isinstance(schema["items"], Mapping) and schema["items"] is not True:
            raise _NotQuick("items as a list")  # additionalItems applies only then
        for key, op in (("minItems", "<"), ("maxItems", ">"), ("minLength", "<"), ("maxLength", ">")):
            if key in own:
                out.append(f"len({var}) {op} {_bound(schema[key])}")
        if "format" in own:
            regex = self.formats.get(schema["format"])
            if regex is not None:  # fastjsonschema does not check a format it does not know
                out.append(f"{self.const(re.compile(regex).match)}({var}) is None")
        for key, op in (("minimum", ">="), ("maximum", "<=")):
            if key in own:
                if "exclusiveMinimum" in schema or "exclusiveMaximum" in schema:
                    raise _NotQuick("exclusive bound")
                out.append(f"not {var} {op} {_number(schema[key])}")  # NaN: not sure
        return out

    def nested(self, schema: Mapping[str, Any], var: str, depth: int, refs: tuple[str, ...]) -> None:
        """The blocks of ``var``'s properties (an object) or items (an array)."""
        t = schema.get("type")
        if t == "object" and "properties" in schema:
            props = schema["properties"]
            if not isinstance(props, Mapping):
                raise _NotQuick("properties")
            required = set(schema.get("required", ()))
            for name, sub in props.items():
                self.property(name, sub, name in required, var, depth, refs)
        elif t == "array" and isinstance(schema.get("items"), Mapping):
            v = self.var()
            mark = len(self.lines)
            self.emit(depth, f"for {v} in {var}:")
            body = len(self.lines)
            self.value(schema["items"], v, depth + 1, refs)
            if len(self.lines) == body:  # anything goes: no loop
                del self.lines[mark:]

    def property(self, name: str, sub: object, required: bool, var: str, depth: int, refs: tuple[str, ...]) -> None:
        """One property of the object ``var`` (a required one is known to be there)."""
        v = self.var()
        get = f"{var}[{name!r}]" if required else f"{var}.get({name!r}, _MISSING)"
        try:
            resolved, inner = self.resolve(sub, refs)
            if resolved is None:
                return
            failures = self.failures(resolved, v)
            mark = len(self.lines)
            self.nested(resolved, v, depth + (0 if required else 1), inner)
            blocks = self.lines[mark:]
            del self.lines[mark:]
        except _NotQuick:
            self.emit(depth, "return False" if required else f"if {name!r} in {var}: return False")
            return
        if not failures and not blocks:
            return
        enum = _enum_alone(resolved)
        if enum is not None:  # one membership test (an absent optional value is the sentinel, in the set)
            self.emit(depth, f"if {get} not in {self.const(enum if required else enum | {_MISSING})}: return False")
            return
        self.emit(depth, f"{v} = {get}")
        if required:
            if failures:
                self.emit(depth, f"if {' or '.join(failures)}: return False")
        elif not blocks:
            self.emit(depth, f"if {v} is not _MISSING and ({' or '.join(failures)}): return False")
            return
        else:
            self.emit(depth, f"if {v} is not _MISSING:")
            self.emit(depth + 1, f"if {' or '.join(failures)}: return False" if failures else "pass")
        self.lines.extend(blocks)


def _enum_alone(schema: Mapping[str, Any]) -> frozenset[Any] | None:
    """The members of a schema that is a string enumeration and nothing else (keywords of other types are no-ops)."""
    t = schema.get("type")
    if "enum" not in schema or t not in (None, "string") or schema.keys() & _FOR_TYPE["string"]:
        return None
    return _strings(schema["enum"])


def _strings(enum: object) -> frozenset[str]:
    if not isinstance(enum, list) or not enum or not all(type(e) is str for e in enum):
        raise _NotQuick("enum of other than strings")
    return frozenset(enum)


def _bound(value: object) -> int:
    if type(value) is not int or value < 0:
        raise _NotQuick(f"bound {value!r}")
    return value


def _number(value: object) -> str:
    if type(value) is not int and type(value) is not float:
        raise _NotQuick(f"number {value!r}")
    return repr(value)


def compile_check(schema: Mapping[str, Any]) -> Check:
    """The quick check of one schema (the document as loaded from the ``ocpp`` package): True when the payload
    certainly conforms, False when the full validator must decide."""
    try:
        writer = _Writer(schema, _draft(schema))
    except _NotQuick:
        return _not_sure
    writer.value(schema, "data", 2, ())
    body = "\n".join(writer.lines)
    source = f"def check(data):\n    try:\n{body}\n    except TypeError:\n        return False\n    return True\n"
    namespace: dict[str, Any] = {"_MISSING": _MISSING, **writer.consts}
    exec(compile(source, "<schema_fast>", "exec"), namespace)  # code generated from the shipped schemas
    check: Check = namespace["check"]
    check.__doc__ = source
    return check


def _not_sure(data: Any) -> bool:
    return False
