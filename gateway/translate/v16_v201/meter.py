"""1.6 MeterValue / SampledValue -> 2.0.1 MeterValueType / SampledValueType (ocpp-translation.md §2.7).

Rules:

* ``value`` (1.6 string) is parsed as a decimal; a non-numeric or non-finite value drops that sample
  (``unparsable_sample``), and so does a number outside the range the gateway carries (magnitude 2**63 or more,
  :mod:`gateway.ocpp.numbers`; counted ``number_out_of_range``): the 1.6 schema takes any text, ``"1e308"`` or
  ``"1e10000000"`` included, and such a value is refused before it is ever turned into a number (the integer
  10**10000000 alone would take minutes of CPU). The sample is dropped rather than the CALL refused, as for any
  value that cannot be carried: the message's other samples (and a StopTransaction's stop) still reach the CSMS.
  A meterValue left without samples is dropped; the message is still answered.
* ``context``, ``phase``, ``location`` copy (identical enums); ``measurand`` copies except ``Temperature`` and
  ``RPM``, which 2.0.1 lacks: the sample is dropped (``unsupported_measurand``).
* ``unit`` -> ``unitOfMeasure`` {``unit``, ``multiplier`` 0}, ``Celcius`` (1.6 schema typo) -> ``Celsius``; no
  rescaling (kWh stays kWh). Absent unit -> ``unitOfMeasure`` omitted (both versions default to Wh).
* Signed data (``format`` ``SignedData``): (1) a ``Raw`` sibling in the same meterValue with the same
  measurand/phase/location/context gets ``signedMeterValue`` and the signed sample disappears; (2) for the
  Transaction.End energy register of a StopTransaction, the blob is handed to the caller, which attaches it to the
  sample built from ``meterStop``; (3) else an OCMF blob gives its value from the first reading's ``RV`` (unit from
  ``RU`` when the sample has none); (4) else the sample is dropped (``signed_without_value``) — a number is never
  invented. ``encodingMethod`` is ``OCMF`` for OCMF blobs, else the configured one; ``signingMethod`` the OCMF
  ``SA`` or the configured one; ``publicKey`` the configured meter key (all may be "": the schema allows it).
  A blob longer than 2500 characters cannot be carried: the signature is dropped (``signed_data_too_long``) and
  the value kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from gateway.ocpp.numbers import INT_MAX, fits
from gateway.translate.base import JsonDict
from gateway.translate.v16_v201.context import Context

__all__ = ["ENERGY_REGISTER", "convert_meter_values", "number", "register_sample", "signed_meter_value"]

ENERGY_REGISTER = "Energy.Active.Import.Register"
UNSUPPORTED_MEASURANDS = frozenset({"Temperature", "RPM"})
SIGNED_MAX = 2500
_MAX_DIGITS = len(str(INT_MAX))  # a decimal whose exponent reaches this is out of range (19: 1e19 > 2**63)

SampleKey = tuple[str, str | None, str | None, str]


def _decimal(text: object) -> Decimal | None:
    """The finite decimal a 1.6 value text writes, else None."""
    if isinstance(text, bool):
        return None
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


#: digits of a plain decimal text read without ``Decimal`` (:func:`number`'s fast path)
_PLAIN_DIGITS = 15


def number(text: object) -> int | float | None:
    """A JSON number for a 1.6 decimal text (int when integral), None when not a finite number or outside the range
    the gateway carries (checked on the exponent first: no huge integer is ever built).

    Fast path, for what meters send (``"9353.5"``, ``"-12"``): ASCII digits with at most one ``.``, an optional
    leading ``-`` and at most 15 digits is read with ``int``/``float``, which give what the ``Decimal`` path gives:
    both round the same decimal correctly, and below 10**15 with at most 15 digits a non-integral decimal is never
    rounded to an integral float (its distance to an integer, at least 10**-d for d decimals, is over 8 times the
    float's rounding error there). Anything else (whitespace, ``+``, an exponent, ``_``, more digits) takes the
    ``Decimal`` path as before. ``Decimal`` was ~5 % of a translated MeterValues round trip."""
    if type(text) is str:
        body = text[1:] if text[:1] == "-" else text
        digits = body.replace(".", "", 1)
        if digits.isdigit() and digits.isascii() and len(digits) <= _PLAIN_DIGITS:
            if len(digits) == len(body):
                return int(body) if body is text else -int(body)
            f = float(text)
            return int(f) if f.is_integer() else f
    return _number_of_decimal(text)


def _number_of_decimal(text: object) -> int | float | None:
    """:func:`number` through ``Decimal``: any text ``Decimal`` reads."""
    value = _decimal(text)
    if value is None or (value and value.adjusted() >= _MAX_DIGITS):
        return None
    result: int | float = int(value) if value == value.to_integral_value() else float(value)
    return result if fits(result) else None


def _why_not(text: object) -> str:
    """Why a sample value gave no number: ``number_out_of_range`` or ``unparsable_sample``."""
    return "number_out_of_range" if _decimal(text) is not None else "unparsable_sample"


def _key(sample: Mapping[str, Any]) -> SampleKey:
    return (
        str(sample.get("measurand", ENERGY_REGISTER)),
        sample.get("phase"),
        sample.get("location"),
        str(sample.get("context", "Sample.Periodic")),
    )


def _ocmf(blob: str) -> tuple[JsonDict, JsonDict] | None:
    """(payload, signature) sections of an OCMF text ``OCMF|{...}|{...}``."""
    if not blob.startswith("OCMF|"):
        return None
    parts = blob.split("|", 2)
    if len(parts) != 3:
        return None
    try:
        payload, signature = json.loads(parts[1]), json.loads(parts[2])
    except ValueError:
        return None
    if not isinstance(payload, dict) or not isinstance(signature, dict):
        return None
    return payload, signature


def signed_meter_value(ctx: Context, blob: str) -> JsonDict | None:
    """2.0.1 ``signedMeterValue`` for a 1.6 signed blob; None when it cannot be carried."""
    if len(blob) > SIGNED_MAX:
        return None
    ocmf = _ocmf(blob)
    encoding = "OCMF" if ocmf else ctx.options.signed_encoding_method
    signing = ctx.options.signed_signing_method
    if ocmf and isinstance(ocmf[1].get("SA"), str):
        signing = ocmf[1]["SA"]
    return {
        "signedMeterData": blob,
        "signingMethod": signing[:50],
        "encodingMethod": encoding[:50],
        "publicKey": ctx.options.meter_public_key[:SIGNED_MAX],
    }


def _ocmf_reading(blob: str) -> tuple[int | float, str | None] | None:
    ocmf = _ocmf(blob)
    if not ocmf:
        return None
    readings = ocmf[0].get("RD")
    if not isinstance(readings, list) or not readings or not isinstance(readings[0], dict):
        return None
    value = number(readings[0].get("RV"))
    unit = readings[0].get("RU")
    return (value, unit if isinstance(unit, str) else None) if value is not None else None


def _base(sample: Mapping[str, Any], value: int | float, unit: str | None) -> JsonDict:
    out: JsonDict = {"value": value}
    for name in ("context", "measurand", "phase", "location"):
        if name in sample:
            out[name] = sample[name]
    if unit is not None:
        out["unitOfMeasure"] = {"unit": "Celsius" if unit == "Celcius" else unit[:20], "multiplier": 0}
    return out


def _attach(ctx: Context, action: str, out: JsonDict, blob: str) -> None:
    signed = signed_meter_value(ctx, blob)
    if signed is None:
        ctx.drop(action, "signed_data_too_long")
    else:
        out["signedMeterValue"] = signed


def register_sample(value_wh: int, context: str, timestamp: str) -> JsonDict:
    """The meterValue entry built from 1.6 ``meterStart`` / ``meterStop``."""
    return {
        "timestamp": timestamp,
        "sampledValue": [
            {"value": value_wh, "context": context, "measurand": ENERGY_REGISTER, "unitOfMeasure": {"unit": "Wh"}}
        ],
    }


def _convert_one(
    ctx: Context, action: str, samples: Sequence[Mapping[str, Any]], end_blob: Callable[[str], None] | None
) -> list[JsonDict]:
    signed = {_key(s): str(s.get("value", "")) for s in samples if s.get("format") == "SignedData"}
    used: set[SampleKey] = set()
    out: dict[int, JsonDict] = {}
    for index, sample in enumerate(samples):  # Raw samples first: they carry their signed siblings
        if sample.get("format") == "SignedData":
            continue
        if sample.get("measurand") in UNSUPPORTED_MEASURANDS:
            ctx.drop(action, "unsupported_measurand")
            continue
        value = number(sample.get("value"))
        if value is None:
            ctx.drop(action, _why_not(sample.get("value")))
            continue
        converted = _base(sample, value, sample.get("unit"))
        if signed:
            key = _key(sample)
            if key in signed and key not in used:
                _attach(ctx, action, converted, signed[key])
                used.add(key)
        out[index] = converted
    if not signed:  # no signed sample: every one was converted above, in order
        return list(out.values())
    for index, sample in enumerate(samples):
        key = _key(sample)
        if sample.get("format") != "SignedData" or key in used:
            continue
        if sample.get("measurand") in UNSUPPORTED_MEASURANDS:
            ctx.drop(action, "unsupported_measurand")
            continue
        blob = str(sample.get("value", ""))
        if end_blob is not None and key[0] == ENERGY_REGISTER and key[3] == "Transaction.End" and not key[1]:
            end_blob(blob)
            continue
        reading = _ocmf_reading(blob)
        if reading is None:
            ctx.drop(action, "signed_without_value")
            continue
        unit = sample.get("unit")
        converted = _base(sample, reading[0], unit if unit is not None else reading[1])
        _attach(ctx, action, converted, blob)
        out[index] = converted
    return [out[i] for i in sorted(out)]


def convert_meter_values(
    ctx: Context,
    action: str,
    meter_values: Sequence[Mapping[str, Any]],
    end_blob: Callable[[str], None] | None = None,
) -> list[JsonDict]:
    """Convert a 1.6 ``meterValue`` / ``transactionData`` list; empty entries are left out."""
    out: list[JsonDict] = []
    for mv in meter_values:
        samples = _convert_one(ctx, action, mv.get("sampledValue") or [], end_blob)
        if samples:
            out.append({"timestamp": mv["timestamp"], "sampledValue": samples})
        else:
            ctx.drop(action, "empty_meter_value")
    return out
