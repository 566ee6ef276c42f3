"""The Kubernetes CEL quantity library for cel-python, which lacks it.

The functions of k8s.io/apiserver/pkg/cel/library/quantity.go (`quantity`, `isQuantity`,
`sign`, `compareTo`, `isGreaterThan`, `isLessThan`, `add`, `sub`, `isInteger`, `asInteger`,
`asApproximateFloat`) on top of `llmservice.api.quantity`, so offline validation evaluates the
CRD's quantity rules with the API server's semantics. Member calls (`q.sign()`) reach these
functions with the target first; a failure is a CEL evaluation error, as on the server.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from celpy import celtypes
from celpy.evaluation import CELEvalError

from llmservice.api.quantity import (
    INT64_MAX,
    INT64_MIN,
    Quantity,
    QuantityError,
    is_quantity,
    parse_quantity,
)


def _cel_quantity(text: Any) -> Any:
    try:
        return parse_quantity(str(text))
    except QuantityError as error:
        return CELEvalError(str(error), QuantityError, (str(error),))


def _cel_is_quantity(text: Any) -> celtypes.BoolType:
    return celtypes.BoolType(is_quantity(str(text)))


def _operand(other: Any) -> Quantity:
    if isinstance(other, Quantity):
        return other
    return Quantity(Fraction(int(other)))


def _cel_sign(quantity: Quantity) -> celtypes.IntType:
    return celtypes.IntType(quantity.sign())


def _cel_compare_to(quantity: Quantity, other: Any) -> celtypes.IntType:
    difference = quantity.value - _operand(other).value
    return celtypes.IntType((difference > 0) - (difference < 0))


def _cel_is_greater_than(quantity: Quantity, other: Any) -> celtypes.BoolType:
    return celtypes.BoolType(quantity.value > _operand(other).value)


def _cel_is_less_than(quantity: Quantity, other: Any) -> celtypes.BoolType:
    return celtypes.BoolType(quantity.value < _operand(other).value)


def _cel_add(quantity: Quantity, other: Any) -> Quantity:
    return Quantity(quantity.value + _operand(other).value)


def _cel_sub(quantity: Quantity, other: Any) -> Quantity:
    return Quantity(quantity.value - _operand(other).value)


def _cel_is_integer(quantity: Quantity) -> celtypes.BoolType:
    value = quantity.value
    return celtypes.BoolType(value.denominator == 1 and INT64_MIN <= value <= INT64_MAX)


def _cel_as_integer(quantity: Quantity) -> Any:
    if not _cel_is_integer(quantity):
        message = "cannot convert value to integer"
        return CELEvalError(message, QuantityError, (message,))
    return celtypes.IntType(int(quantity.value))


def _cel_as_approximate_float(quantity: Quantity) -> celtypes.DoubleType:
    return celtypes.DoubleType(float(quantity.value))


CEL_FUNCTIONS: dict[str, Any] = {
    "quantity": _cel_quantity,
    "isQuantity": _cel_is_quantity,
    "sign": _cel_sign,
    "compareTo": _cel_compare_to,
    "isGreaterThan": _cel_is_greater_than,
    "isLessThan": _cel_is_less_than,
    "add": _cel_add,
    "sub": _cel_sub,
    "isInteger": _cel_is_integer,
    "asInteger": _cel_as_integer,
    "asApproximateFloat": _cel_as_approximate_float,
}
