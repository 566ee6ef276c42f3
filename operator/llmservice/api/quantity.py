"""Kubernetes resource quantities ("500m", "16Gi", "1e3"), parsed as the API server parses them.

`parse_quantity` follows `resource.ParseQuantity` of k8s.io/apimachinery step by step (sign,
digits, suffix, the exact int64 fast path, then rounding up to nano units and the int64
cap of the slow path), so two quantities compare as they do there. The API also requires
apimachinery's documented expression (`schema_types.QUANTITY_PATTERN`), so a string whose
reading might differ between the two parsers (".", "+", "Ki") is refused either way.

`llmservice.api.cel_quantity` builds the CEL quantity library on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
_NANO = Fraction(1, 10**9)
# Digits an int64 holds for sure; more go the slow (arbitrary precision) way.
_MAX_INT64_FACTORS = 18
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12}
_DECIMAL_SUFFIXES |= {"P": 15, "E": 18}
_SUFFIX_CHARACTERS = frozenset("eEinumkKMGTP")
_DIGITS = frozenset("0123456789")
_EXPONENT_LIMIT = 1000


class QuantityError(ValueError):
    """Not a quantity the API server would parse."""


@dataclass(frozen=True, order=True)
class Quantity:
    """An exact quantity value."""

    value: Fraction

    def sign(self) -> int:
        return (self.value > 0) - (self.value < 0)


def _split(text: str) -> tuple[bool, str, str, str, str]:
    """(positive, value, numerator, denominator, suffix), as `parseQuantityString`."""
    positive, pos, end = True, 0, len(text)
    if text[:1] in ("-", "+"):
        positive = text[0] == "+"
        pos = 1
    while pos < end and text[pos] == "0":
        pos += 1
    if pos >= end:
        return positive, "0", "0", "", ""
    start = pos
    while pos < end and text[pos] in _DIGITS:
        pos += 1
    numerator = text[start:pos] or "0"
    if pos >= end:
        return positive, text, numerator, "", ""
    denominator = ""
    if text[pos] == ".":
        pos += 1
        start = pos
        while pos < end and text[pos] in _DIGITS:
            pos += 1
        denominator = text[start:pos]
        if pos >= end:
            return positive, text, numerator, denominator, ""
    value = text[:pos]
    suffix_start = pos
    while pos < end and text[pos] in _SUFFIX_CHARACTERS:
        pos += 1
    if pos < end and text[pos] in ("-", "+"):
        pos += 1
    while pos < end and text[pos] in _DIGITS:
        pos += 1
    if pos < end:
        raise QuantityError("quantities must match the regular expression of a quantity")
    return positive, value, numerator, denominator, text[suffix_start:]


def _suffix(suffix: str) -> tuple[int, int, str]:
    """(base, exponent, format) of a suffix, as the quantity suffixer interprets it."""
    if suffix in _BINARY_SUFFIXES:
        return 2, _BINARY_SUFFIXES[suffix], "BinarySI"
    if suffix in _DECIMAL_SUFFIXES:
        return 10, _DECIMAL_SUFFIXES[suffix], "DecimalSI"
    if len(suffix) > 1 and suffix[0] in "eE":
        exponent = suffix[1:]
        digits = exponent[1:] if exponent[:1] in ("+", "-") else exponent
        if digits and set(digits) <= _DIGITS and INT64_MIN <= int(exponent) <= INT64_MAX:
            return 10, _int32(int(exponent)), "DecimalExponent"
    raise QuantityError(f"unable to parse quantity's suffix {suffix!r}")


def _int32(value: int) -> int:
    """Go's int32(x) conversion: wrap around."""
    return (value + 2**31) % 2**32 - 2**31


def _power(base: int, exponent: int) -> Fraction:
    """base ** exponent, with the exponent clamped so absurd inputs stay cheap: beyond 10^±1000
    the API server caps or rounds the value anyway, except that two such giants compare
    equal here."""
    return Fraction(base) ** max(-_EXPONENT_LIMIT, min(exponent, _EXPONENT_LIMIT))


def _fast(positive: bool, numerator: str, denominator: str, base: int, exponent: int) -> Any:
    """The exact int64 path of ParseQuantity, or None where it would not apply."""
    mantissa = 1
    if base == 10:
        scale = _int32(exponent)
        precision = _MAX_INT64_FACTORS - len(numerator) - len(denominator)
    elif exponent >= 0 and not denominator:
        scale = 0
        mantissa = 1 << exponent
        precision = 15 - len(numerator) - int(exponent * 3 / 10) - 1
    else:
        return None
    scale -= len(denominator)
    if precision < 0 or scale < -9:
        return None
    product = int(numerator + denominator) * mantissa
    if product > INT64_MAX:
        return None
    magnitude = Fraction(product) * _power(10, scale)
    return magnitude if positive else -magnitude


def parse_quantity(text: str) -> Quantity:
    """The value of `text`, or `QuantityError` where the API server would refuse it."""
    if not text:
        raise QuantityError("quantities must not be empty")
    if text == "0":
        return Quantity(Fraction(0))
    positive, value, numerator, denominator, suffix = _split(text)
    base, exponent, _format = _suffix(suffix)
    fast = _fast(positive, numerator, denominator, base, exponent)
    if fast is not None:
        return Quantity(fast)
    try:
        amount = Fraction(value)
    except ValueError:
        raise QuantityError(f"{text!r} is not a number") from None
    amount *= _power(base, exponent)
    magnitude = abs(amount)
    if magnitude:
        # Round non-zero values up to the next nano unit, as the API server does.
        units = -((-magnitude) // _NANO)
        magnitude = units * _NANO
    magnitude = min(magnitude, Fraction(INT64_MAX))
    return Quantity(magnitude if amount >= 0 else -magnitude)


def is_quantity(text: str) -> bool:
    try:
        parse_quantity(text)
    except QuantityError:
        return False
    return True
