"""Quantities parse and compare as in k8s.io/apimachinery, and the CEL quantity library
behaves in cel-python as in the API server's CEL (k8s.io/apiserver/pkg/cel/library)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import celpy
import pytest
from celpy.evaluation import CELEvalError

from llmservice.api.cel_quantity import CEL_FUNCTIONS
from llmservice.api.quantity import is_quantity, parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("1", 1),
        ("500m", Fraction(1, 2)),
        ("16Gi", 16 * 2**30),
        ("1.5Gi", 3 * 2**29),
        ("2Ki", 2048),
        ("1k", 1000),
        ("1M", 10**6),
        ("1E", 10**18),
        ("1e3", 1000),
        ("1E+3", 1000),
        ("1e-3", Fraction(1, 1000)),
        ("+.5", Fraction(1, 2)),
        ("1.", 1),
        ("-1", -1),
        ("-0", 0),
        ("007", 7),
        ("100n", Fraction(1, 10**7)),
        # Below a nano unit, non-zero values round up to one nano, as on the API server.
        ("0.0000000001", Fraction(1, 10**9)),
        ("1e-10", Fraction(1, 10**9)),
        # More digits than an int64 holds: the slow path caps at the int64 maximum.
        ("12345678901234567890", 2**63 - 1),
    ],
)
def test_quantity_values(text: str, value: Fraction | int) -> None:
    assert parse_quantity(text).value == value


@pytest.mark.parametrize(
    "text", ["", "1e", "1e3.5", "1ki", "1mi", "1 ", " 1", "16GB", "1n5", "abc", "1.2.3", "--1"]
)
def test_not_quantities(text: str) -> None:
    assert not is_quantity(text)


def evaluate(expression: str) -> Any:
    environment = celpy.Environment()
    program = environment.program(environment.compile(expression), functions=CEL_FUNCTIONS)
    return program.evaluate({})


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("isQuantity('16Gi')", True),
        ("isQuantity('16GB')", False),
        ("quantity('1Gi').isGreaterThan(quantity('1G'))", True),
        ("quantity('1000m').isGreaterThan(quantity('1'))", False),
        ("quantity('999m').isLessThan(quantity('1'))", True),
        ("quantity('2000m').compareTo(quantity('2'))", 0),
        ("quantity('3').compareTo(quantity('2'))", 1),
        ("quantity('-3').compareTo(quantity('2'))", -1),
        ("quantity('-5Mi').sign()", -1),
        ("quantity('0Gi').sign()", 0),
        ("quantity('1n').sign()", 1),
        ("quantity('1Ki').add(quantity('24')).compareTo(quantity('1048'))", 0),
        ("quantity('1Ki').add(24).compareTo(quantity('1048'))", 0),
        ("quantity('1').sub(quantity('500m')).compareTo(quantity('0.5'))", 0),
        ("quantity('1Ki').isInteger()", True),
        ("quantity('1500m').isInteger()", False),
        ("quantity('2Ki').asInteger()", 2048),
        ("quantity('1500m').asApproximateFloat()", 1.5),
    ],
)
def test_cel_quantity_library(expression: str, expected: Any) -> None:
    assert evaluate(expression) == expected


@pytest.mark.parametrize("expression", ["quantity('16GB')", "quantity('1500m').asInteger()"])
def test_cel_quantity_errors_are_evaluation_errors(expression: str) -> None:
    with pytest.raises(CELEvalError):
        evaluate(expression)
