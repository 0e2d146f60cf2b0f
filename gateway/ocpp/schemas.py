"""OCPP JSON-schema validators, compiled from the official schemas, each on first use.

The schemas are the ones shipped in the PyPI package ``ocpp`` (the package's Python code is not imported, only its
data files are read):

* 1.6: ``ocpp/v16/schemas/<Action>.json`` (request) and ``<Action>Response.json`` (response), core profiles plus
  the security-extension messages;
* 2.0.1: ``ocpp/v201/schemas/<Action>Request.json`` and ``<Action>Response.json``;
* 2.1: ``ocpp/v21/schemas/<Action>Request.json`` and ``<Action>Response.json``, and ``<Action>.json`` for the
  messages sent as SEND frames (``NotifyPeriodicEventStream``: a request with no response).

"2.0" (OCPP 2.0, 2018) has no schemas in the package, and 2.0.1's are not 2.0's (2.0.1 is an errata release that
changed fields and enumerations): validating a 2.0 charger against them would refuse frames that are valid 2.0.
So 2.0 is not validated (:func:`validates` is False, :data:`SCHEMA_VERSIONS` does not hold it); the session skips
validation for it, and ``check-config`` warns when ``session.validate_schemas`` is on and a listener offers 2.0.
:func:`validate` for a version without schemas raises :class:`UnknownAction` (a ``LookupError`` every caller
already handles), never ``ValueError``: no version can make validation raise out of a frame callback.

Use::

    check_installed()   # at start (the gateway does it before it listens): the schema files are there; compiles none
    validate("1.6", "StartTransaction", "request", payload)   # None, or raises SchemaViolation

Validators are compiled with ``fastjsonschema`` (draft-04 for 1.6, draft-06 for 2.0.1 and 2.1; every shipped schema
compiles, ``format`` checks such as ``date-time`` included), each the first time it is needed, once per process:
:func:`load` returns a version's table keyed by (action, kind) from the file listing alone, and compiles a value
the first time it is read; :func:`validate` compiles the one schema it needs on its first call for that (version,
action, kind); :func:`has_schema`, :func:`actions` and :func:`check_installed` compile nothing. Most deployments
use a handful of actions, and compiling all 387 schemas takes ~3.3-4.2 s of CPU and adds ~45 MB to a process's
RSS (2-core VM), which the gateway used to pay in every process at every start (three with ``workers: 2``, the
supervisor too, which validates nothing); ``check_installed`` takes ~3 ms.

So the first validated frame of each (version, action, kind) in a process waits for that one schema's compilation
(quick check and full validator), on the event loop, once; every later frame finds it compiled. Measured on the
2-core VM, quiet, one fresh process per version compiling each of its schemas in turn, three runs: 1.6 median
1.7-2.0 ms, max 17 ms (MeterValues request); 2.0.1 median 3.8-5.7 ms, max 43-60 ms (RequestStartTransaction
request); 2.1 median 5.7-6.5 ms, max 148-170 ms (RequestStartTransaction, ReportChargingProfiles, SetChargingProfile
requests). As the first compilation of a fresh process: a BootNotification request 7 ms (1.6), 12-17 ms (2.0.1,
2.1), a TransactionEvent request 53-56 ms (2.0.1), 97-116 ms (2.1). So the gateway compiles at start the
:data:`HOT_ACTIONS` of the versions it validates (:func:`warm`: 44 ms for 1.6, 124 ms for 2.0.1, 223 ms for 2.1,
14 schemas each; gateway/ops/lifecycle.py ``validated_versions``), and the rest on first use. :func:`load_all`
still compiles every schema (the tests call it; the gateway does not). Validation never changes the payload:
fastjsonschema would otherwise write schema ``default`` values into it (``multiplier: 0``, ``offline: false`` …), so
validators are compiled with ``use_default=False``.

In front of each full validator sits a quick check compiled from the same schema (:mod:`gateway.ocpp.schema_fast`):
it answers "certainly valid" or "not sure", and only "not sure" runs the full validator, so that every refusal, its
path, its message and the CALLERROR code chosen from it are the full validator's as before. A valid 1.6 MeterValues
of four samples is checked in ~11 µs instead of ~30, a 2.0.1 TransactionEvent in ~17 instead of ~66 (2-core VM;
of the ~3.3 s of CPU that compiling every schema takes there, quiet, ~0.3 s is the quick checks').

``multipleOf`` (1.6 SetChargingProfile, RemoteStartTransaction, GetCompositeScheduleResponse: ``limit`` and
``minChargingRate`` are multiples of 0.1): a plain float check fails on ``2.3 / 0.1 == 22.999…``. fastjsonschema
(verified on 2.22) computes the quotient as ``Decimal(repr(value)) / Decimal(repr(multipleOf))``, and ``repr`` of
a float parsed from JSON text gives back the shortest text that parses to it, so a float read from ``"2.3"`` passes
and one read from ``"2.35"`` fails, exactly as the decimal text would. So payloads must hold plain floats, as
``orjson``/``json`` produce them; do **not** parse with ``parse_float=Decimal``: ``repr`` of a ``Decimal`` is
``Decimal('2.3')`` and fastjsonschema's quotient raises ``decimal.InvalidOperation`` on it. Nothing is skipped; the
test suite pins this behaviour (``tests/unit/test_schemas.py``) so that a fastjsonschema upgrade that changes it
is caught.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import fastjsonschema

from gateway.ocpp.schema_fast import Check, compile_check

__all__ = [
    "Kind",
    "SchemaViolation",
    "UnknownAction",
    "Version",
    "actions",
    "check_installed",
    "document",
    "SCHEMA_VERSIONS",
    "has_schema",
    "load",
    "load_all",
    "warm",
    "HOT_ACTIONS",
    "validate",
    "validates",
]

Version = Literal["1.6", "2.0.1", "2.1"]
Kind = Literal["request", "response"]
Validator = Callable[[Any], Any]
#: per (action, kind): the quick check (True: certainly valid; gateway/ocpp/schema_fast.py) and the full validator
Validators = tuple[Check, Validator]

_DIRS: dict[str, str] = {"1.6": "v16", "2.0.1": "v201", "2.1": "v21"}
#: the versions whose official schemas the gateway validates against ("2.0" has none: see the module docstring)
SCHEMA_VERSIONS: tuple[Version, ...] = ("1.6", "2.0.1", "2.1")


def validates(version: str) -> bool:
    """True when the gateway has the official schemas of ``version`` (False for "2.0")."""
    return version in _DIRS


class SchemaViolation(ValueError):
    """A payload does not conform to the schema of (version, action, kind).

    ``path`` locates the offending value (``$`` is the payload, ``$.idTagInfo.status``, ``$.meterValue[0]`` …);
    ``message`` is the validator's text.
    """

    def __init__(self, version: str, action: str, kind: str, path: str, message: str) -> None:
        super().__init__(f"{version} {action} {kind}: {path}: {message}")
        self.version = version
        self.action = action
        self.kind = kind
        self.path = path
        self.message = message


class UnknownAction(LookupError):
    """No schema exists for (version, action, kind): the action is not part of that OCPP version."""

    def __init__(self, version: str, action: str, kind: str) -> None:
        super().__init__(f"no {kind} schema for {action!r} in OCPP {version}")
        self.version = version
        self.action = action
        self.kind = kind


def _schema_dir(version: str) -> Path:
    if version not in _DIRS:
        raise ValueError(f"unknown OCPP version {version!r}")
    spec = importlib.util.find_spec("ocpp")  # locates the package without executing it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the 'ocpp' package (schemas) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / _DIRS[version] / "schemas"


def _action_kind(version: str, stem: str) -> tuple[str, Kind]:
    if stem.endswith("Response"):
        return stem.removesuffix("Response"), "response"
    if version != "1.6":
        return stem.removesuffix("Request"), "request"  # a 2.1 SEND message's file has no suffix
    return stem, "request"


#: (version, action, kind) -> its quick check and full validator, compiled on first use, once per process
_compiled: dict[tuple[str, str, str], Validators] = {}
#: how many schemas this process has compiled (a schema compiled twice by a race counts twice): the tests read it
_compilations = 0


def _compile(version: str, action: str, kind: str, file: Path) -> Validators:
    global _compilations
    with file.open(encoding="utf-8") as fh:
        schema = json.load(fh)
    pair = (compile_check(schema), fastjsonschema.compile(schema, use_default=False))
    _compilations += 1
    return _compiled.setdefault((version, action, kind), pair)  # a racing compilation's pair wins: the same code


class _Table(Mapping[tuple[str, Kind], Validators]):
    """Every schema of one version, keyed by (action, kind), from the file listing: a value is compiled the first
    time it is read (``table[key]``, ``.get``, ``.items()`` …), once per process; ``in``, ``len`` and iterating the
    keys compile nothing."""

    __slots__ = ("_files", "_version")

    def __init__(self, version: str, files: dict[tuple[str, Kind], Path]) -> None:
        self._version = version
        self._files = files

    def __getitem__(self, key: tuple[str, Kind]) -> Validators:
        file = self._files[key]  # KeyError: no such schema
        action, kind = key
        done = _compiled.get((self._version, action, kind))
        return done if done is not None else _compile(self._version, action, kind, file)

    def __contains__(self, key: object) -> bool:
        return key in self._files

    def __iter__(self) -> Iterator[tuple[str, Kind]]:
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)

    def __repr__(self) -> str:
        return f"<OCPP {self._version} schemas: {len(self._files)}, compiled on first use>"


@functools.cache
def load(version: str) -> Mapping[tuple[str, Kind], Validators]:
    """Every validator of ``version``, keyed by (action, kind): its quick check and its full validator
    (:func:`validate` runs the second only when the first is not sure). The keys come from the file listing (read
    once); each value is compiled the first time it is read, once per process.

    Raises ``ValueError`` for an unknown version and ``RuntimeError`` when the ``ocpp`` package is missing or has no
    schema of ``version``.
    """
    files: dict[tuple[str, Kind], Path] = {}
    for file in sorted(_schema_dir(version).glob("*.json")):
        files[_action_kind(version, file.stem)] = file
    if not files:
        raise RuntimeError(f"no schemas found for OCPP {version}")
    return _Table(version, files)


@functools.cache
def document(version: str, action: str, kind: Kind) -> Mapping[str, Any]:
    """The schema of (version, action, kind) as the JSON document it is (read once; the quirk profiles walk it to
    check their paths and repairs). Raises :class:`UnknownAction` when there is none. Do not change what it returns:
    it is shared."""
    if version not in _DIRS:
        raise UnknownAction(version, action, kind)
    stem = action + ("Response" if kind == "response" else "" if version == "1.6" else "Request")
    file = _schema_dir(version) / f"{stem}.json"
    if not file.exists() and version == "2.1" and kind == "request":
        file = _schema_dir(version) / f"{action}.json"  # a SEND message's file has no suffix
    if not file.exists():
        raise UnknownAction(version, action, kind)
    with file.open(encoding="utf-8") as fh:
        loaded: dict[str, Any] = json.load(fh)
    return loaded


#: the actions every charger of a version sends from its first minutes (boot, heartbeat, status, metering,
#: transactions, authorisation): what :func:`warm` compiles at start, requests and responses
HOT_ACTIONS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "1.6": ("Authorize", "BootNotification", "Heartbeat", "MeterValues", "StartTransaction",
                "StatusNotification", "StopTransaction"),
        "2.0.1": ("Authorize", "BootNotification", "Heartbeat", "MeterValues", "NotifyEvent", "StatusNotification",
                  "TransactionEvent"),
        "2.1": ("Authorize", "BootNotification", "Heartbeat", "MeterValues", "NotifyEvent", "StatusNotification",
                "TransactionEvent"),
    }
)  # fmt: skip


_KINDS: tuple[Kind, ...] = ("request", "response")


def warm(versions: Iterable[str]) -> int:
    """Compile the :data:`HOT_ACTIONS` of each of ``versions`` (requests and responses; versions without schemas
    are skipped) so that no charger's first frames wait for them: at start, for the versions a deployment
    validates. Returns how many were compiled now (those compiled before are not counted)."""
    n = 0
    for version in versions:
        if version not in _DIRS:
            continue
        table = load(version)
        for action in HOT_ACTIONS.get(version, ()):
            for kind in _KINDS:
                key = (action, kind)
                if key in table and (version, action, kind) not in _compiled:
                    table[key]  # compiles it
                    n += 1
    return n


def load_all() -> None:
    """Compile every schema of every version in :data:`SCHEMA_VERSIONS` (once per process; the gateway does not
    call it: each schema is compiled on first use)."""
    for version in SCHEMA_VERSIONS:
        for _ in load(version).values():
            pass


def check_installed() -> None:
    """Check, compiling nothing, that the schemas of every version in :data:`SCHEMA_VERSIONS` are there (the
    ``ocpp`` package is installed, each version's directory holds schemas, and each file is JSON: ~25 ms for the
    387); at start, so that a missing or damaged package fails the start and not the first validated frame. Raises
    ``RuntimeError`` otherwise."""
    for version in SCHEMA_VERSIONS:
        load(version)  # the package is there and the version has schemas
        for file in _schema_dir(version).glob("*.json"):
            try:
                json.loads(file.read_bytes())
            except (OSError, ValueError) as e:
                raise RuntimeError(f"OCPP {version} schema {file.name} is unreadable: {e}") from None


def actions(version: str) -> frozenset[str]:
    """Every action name that has a request schema in ``version`` (compiles nothing)."""
    return frozenset(action for action, kind in load(version) if kind == "request")


def has_schema(version: str, action: str, kind: Kind) -> bool:
    """True when (version, action, kind) has a schema (compiles nothing)."""
    return (action, kind) in load(version)


def _path(name: str) -> str:
    # fastjsonschema names the value "data.a.b[0]"; report it as "$.a.b[0]"
    return "$" + name.removeprefix("data") if name.startswith("data") else name


def validate(version: str, action: str, kind: Kind, payload: Mapping[str, Any]) -> None:
    """Check ``payload`` against the schema of (version, action, kind).

    Raises :class:`SchemaViolation` when it does not conform, :class:`UnknownAction` when no such schema exists
    (also for a version the gateway has no schemas of, such as "2.0").
    """
    validators = _compiled.get((version, action, kind))
    if validators is None:  # first use in this process (or no such schema)
        if version not in _DIRS:
            raise UnknownAction(version, action, kind)
        table = load(version)
        if (action, kind) not in table:
            raise UnknownAction(version, action, kind)
        validators = table[(action, kind)]
    quick, full = validators
    if quick(payload):  # certainly valid: the common case (the full validator decides everything else)
        return
    try:
        full(payload)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise SchemaViolation(version, action, kind, _path(str(exc.name)), str(exc.message)) from None


def schema_error_code(e: SchemaViolation, version: str) -> str:
    """The CALLERROR code for a CALL that fails its schema (OCPP-J 1.6 §4.2.3, 2.0.1 Part 4 §4.3), spelled for
    ``version``: a missing or extra property is an occurrence violation, a wrong JSON type a type violation, any
    other constraint (enum, length, range) a property violation."""
    from gateway.ocpp.errors import normalise_code

    msg = e.message
    if "must contain" in msg or "must not contain" in msg:
        code = "OccurrenceConstraintViolation"
    elif "must be " in msg and any(t in msg for t in ("string", "integer", "number", "boolean", "object", "array")):
        code = "TypeConstraintViolation"
    else:
        code = "PropertyConstraintViolation"
    return normalise_code(code, version)
