"""2.0.1 MeterValueType / SampledValueType -> 1.6 MeterValue / SampledValue (ocpp-translation.md §4.3), and the
integer Wh readings that 1.6 ``meterStart`` / ``meterStop`` need (§4.2).

Rules:

* ``value`` (2.0.1 number) -> 1.6 string in plain decimal notation, never with an exponent (``1E+3`` -> ``1000``,
  ``1e-07`` -> ``0.0000001``); trailing zeros after the decimal point are removed. **decision** (§4.3): the
  ``unitOfMeasure.multiplier`` is applied into the value and the unit is kept (value 1.5, unit kWh, multiplier 3
  -> ``"1500"`` kWh): 1.6 has no multiplier, and rescaling into another unit would need a unit table per measurand.
* ``unitOfMeasure.unit`` -> ``unit`` only when it is one of the 1.6 enum values listed in §4.3 (``Hertz``, which
  the PyPI package's 1.6 schema also accepts, is left out: the official 1.6 schema does not have it); any other
  unit is omitted and counted (``unit_not_in_16``). An absent ``unitOfMeasure`` or ``unit`` stays absent (both
  versions default to Wh).
* ``measurand`` ``Energy.Active.Net``, ``Energy.Reactive.Net``, ``Energy.Apparent.Net``,
  ``Energy.Apparent.Import``, ``Energy.Apparent.Export`` (no 1.6 value) -> the sample is dropped, counted
  ``unsupported_measurand``. ``context``, ``phase``, ``location`` are copied (identical enums).
* ``signedMeterValue`` -> an extra 1.6 sample right after the plain one, same measurand/context/phase/location,
  ``format`` ``SignedData``, ``value`` <- ``signedMeterData``; ``signingMethod``, ``encodingMethod`` and
  ``publicKey`` have no 1.6 place: counted ``signed_method_dropped`` (once per signed sample).
* A value whose result leaves the range the gateway carries (:mod:`gateway.ocpp.numbers`: magnitude 2**63 or
  more once the multiplier is applied; or, **decision**, below 1e-324, what no double holds, whose 1.6 text
  would run to hundreds of zeros) is a sample 1.6 cannot carry: dropped, counted ``number_out_of_range``; the
  message's other samples go on (a value or multiplier out of range in the 2.0.1 JSON itself refuses the whole
  CALL before translation: ``gateway.core.relay``). The exponent is checked before the multiplier is applied, so
  no huge decimal is ever built (``multiplier`` 10**9 used to raise ``decimal.InvalidOperation`` out of the
  session, 10**5 to send a 100 kB value). A ``multiplier`` written as an integral float (``3.0``, which the 2.0.1
  schema takes for an integer) counts as that integer.
* A meterValue left without samples is left out (counted ``empty_meter_value``); the caller decides what an empty
  result means (no 1.6 MeterValues is sent: its ``meterValue`` must not be empty).
* ``customData`` is never copied.

Wh readings (§4.2): the ``Energy.Active.Import.Register`` sample (absent measurand = that one) without ``phase``
(a per-phase register is not the meter's total) whose unit is ``Wh`` or ``kWh`` (absent = Wh); value x
10^multiplier, x 1000 for kWh, rounded half-up to an integer (a reading whose Wh leave the signed 64-bit range is
no reading). :func:`energy_wh` prefers a sample with the asked ``context`` and otherwise takes the latest register
sample of any context (by meterValue timestamp, then order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from gateway.ocpp.numbers import INT_MAX, INT_MIN, fits
from gateway.translate.base import JsonDict
from gateway.translate.v201_v16.context import Context, parse_ts

__all__ = [
    "ENERGY_REGISTER",
    "UNITS_16",
    "UNSUPPORTED_MEASURANDS",
    "convert_meter_values",
    "decimal_text",
    "energy_wh",
    "is_register",
]

ENERGY_REGISTER = "Energy.Active.Import.Register"
UNSUPPORTED_MEASURANDS = frozenset(
    {
        "Energy.Active.Net",
        "Energy.Reactive.Net",
        "Energy.Apparent.Net",
        "Energy.Apparent.Import",
        "Energy.Apparent.Export",
    }
)
UNITS_16 = frozenset(
    {
        "Wh",
        "kWh",
        "varh",
        "kvarh",
        "W",
        "kW",
        "VA",
        "kVA",
        "var",
        "kvar",
        "A",
        "V",
        "K",
        "Celsius",
        "Fahrenheit",
        "Percent",
    }
)
_COPIED = ("context", "measurand", "phase", "location")
_MAX_DIGITS = len(str(INT_MAX))  # a result whose exponent reaches this is out of range (19: 1e19 > 2**63)
_SMALLEST = -324  # below 1e-324 (the smallest double is 4.9e-324) a value is out of range too


def _decimal(value: object, multiplier: object = 0) -> Decimal | None:
    """``value`` x 10^``multiplier``; None when ``value`` is not a number or the result is out of range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    exponent = 0
    if isinstance(multiplier, int) and not isinstance(multiplier, bool):
        exponent = multiplier
    elif isinstance(multiplier, float) and multiplier.is_integer() and fits(multiplier):
        exponent = int(multiplier)
    if not number:
        return number
    if not _SMALLEST <= number.adjusted() + exponent < _MAX_DIGITS:  # before scaleb: no huge decimal is built
        return None
    scaled = number.scaleb(exponent)
    return scaled if abs(scaled) <= INT_MAX else None


def decimal_text(value: object, multiplier: object = 0) -> str | None:
    """A 2.0.1 sample value (times 10^multiplier) as 1.6 decimal text without exponent; None if not a number.

    Fast path, for what meters send (no multiplier; an int, or a float whose ``repr`` has no exponent, which puts
    it between 1e-4 and 1e16, inside the range): the text is the ``repr`` itself less a trailing ``.0`` (the
    shortest digits that read back as the value, which is what ``Decimal(repr).normalize()`` writes), ``0`` for
    zero. ``Decimal`` was ~6 % of a translated TransactionEvent round trip (py-spy, ``--setup B``)."""
    if multiplier == 0 and type(multiplier) is int:
        if type(value) is int:
            return str(value) if -INT_MAX <= value <= INT_MAX else None
        if type(value) is float:
            text = repr(value)
            if "e" not in text and "n" not in text:  # no exponent, not nan or inf
                if value == 0:
                    return "0"
                return text[:-2] if text.endswith(".0") else text
    return _text_of_decimal(value, multiplier)


def _text_of_decimal(value: object, multiplier: object) -> str | None:
    """:func:`decimal_text` through ``Decimal``: any value and multiplier."""
    number = _decimal(value, multiplier)
    if number is None:
        return None
    if number == 0:
        return "0"
    text = format(number.normalize(), "f")
    return text


def _unit(sample: Mapping[str, Any]) -> str | None:
    unit = (sample.get("unitOfMeasure") or {}).get("unit")
    return unit if isinstance(unit, str) else None


def _multiplier(sample: Mapping[str, Any]) -> object:
    return (sample.get("unitOfMeasure") or {}).get("multiplier", 0)


def _convert_sample(ctx: Context, action: str, sample: Mapping[str, Any]) -> list[JsonDict]:
    if sample.get("measurand") in UNSUPPORTED_MEASURANDS:
        ctx.drop(action, "unsupported_measurand")
        return []
    value = sample.get("value")
    text = decimal_text(value, _multiplier(sample))
    if text is None:  # the 2.0.1 schema guarantees a number: out of range once the multiplier is applied
        number = isinstance(value, int | float) and not isinstance(value, bool)
        ctx.drop(action, "number_out_of_range" if number else "unparsable_sample")
        return []
    out: JsonDict = {"value": text}
    for name in _COPIED:
        if name in sample:
            out[name] = sample[name]
    unit = _unit(sample)
    if unit is not None:
        if unit in UNITS_16:
            out["unit"] = unit
        else:
            ctx.drop(action, "unit_not_in_16")
    result = [out]
    signed = sample.get("signedMeterValue")
    if isinstance(signed, Mapping) and isinstance(signed.get("signedMeterData"), str):
        extra: JsonDict = {"value": signed["signedMeterData"], "format": "SignedData"}
        for name in _COPIED:
            if name in sample:
                extra[name] = sample[name]
        result.append(extra)
        ctx.drop(action, "signed_method_dropped")
    return result


def convert_meter_values(ctx: Context, action: str, meter_values: Sequence[Mapping[str, Any]]) -> list[JsonDict]:
    """Convert a 2.0.1 ``meterValue`` list to 1.6 (empty entries left out, counted)."""
    out: list[JsonDict] = []
    for mv in meter_values:
        samples: list[JsonDict] = []
        for sample in mv.get("sampledValue") or []:
            samples.extend(_convert_sample(ctx, action, sample))
        if samples:
            out.append({"timestamp": mv["timestamp"], "sampledValue": samples})
        else:
            ctx.drop(action, "empty_meter_value")
    return out


def is_register(sample: Mapping[str, Any]) -> bool:
    """An ``Energy.Active.Import.Register`` total (absent measurand = that one), no phase, unit Wh/kWh."""
    return (
        sample.get("measurand", ENERGY_REGISTER) == ENERGY_REGISTER
        and "phase" not in sample
        and (_unit(sample) or "Wh") in ("Wh", "kWh")
    )


def _wh(sample: Mapping[str, Any]) -> int | None:
    number = _decimal(sample.get("value"), _multiplier(sample))
    if number is None:
        return None
    if (_unit(sample) or "Wh") == "kWh":
        number *= 1000
    wh = int(number.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return wh if INT_MIN <= wh <= INT_MAX else None


def energy_wh(meter_values: Sequence[Mapping[str, Any]], context: str | None = None) -> int | None:
    """Integer Wh of the energy register: the sample with ``context`` if any, else the latest register sample."""
    found: list[tuple[int, int, int, int]] = []  # (context match, timestamp order, position, Wh)
    position = 0
    one = len(meter_values) == 1  # one timestamp orders nothing: not parsed
    for mv in meter_values:
        moment = None if one else parse_ts(mv.get("timestamp"))
        stamp = int(moment.timestamp() * 1000) if moment is not None else 0
        for sample in mv.get("sampledValue") or []:
            position += 1
            if not is_register(sample):
                continue
            wh = _wh(sample)
            if wh is not None:
                found.append((int(context is not None and sample.get("context") == context), stamp, position, wh))
    return max(found)[3] if found else None
