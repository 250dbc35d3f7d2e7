"""Quantity parsing and serialization match apimachinery's resource.Quantity."""

from fractions import Fraction

import pytest

from tinykube.api.quantity import (
    ERR_FORMAT,
    QuantityError,
    canonical,
    milli_value,
    parse_quantity,
    round_up_milli,
    value,
)


@pytest.mark.parametrize(("text", "expected"), [
    ("0.5", "500m"),
    ("1000m", "1"),
    ("128Mi", "128Mi"),
    ("1e3", "1e3"),
    ("1024Ki", "1Mi"),
    ("1.5Gi", "1536Mi"),
    ("1.5Ki", "1536"),        # not a whole number of Ki: shown as DecimalSI
    ("0.5Gi", "512Mi"),
    ("8Ki", "8Ki"),
    ("1000", "1k"),
    ("1k", "1k"),
    ("1.5", "1500m"),
    ("250m", "250m"),
    ("100m", "100m"),
    ("0", "0"),
    ("-0", "0"),
    ("00", "0"),
    ("0Ki", "0"),
    ("+1", "+1"),             # already canonical: kept verbatim, sign and all
    ("1.500", "1.500"),       # ditto (upstream's cached string)
    ("1.5e3", "1500"),
    ("12e6", "12e6"),
    ("1e1000", "10e999"),
    ("0.1m", "100u"),
    ("0.0000000001", "1n"),   # rounded up to the nano
    ("1e-20", "1e-9"),
    ("-1.5", "-1500m"),
    ("8Ei", "9223372036854775807"),  # BinarySI is capped at 2^63-1
    ("1E", "1E"),
    ("1000E", "1"),           # upstream has no suffix past E and prints none
    ("1e00000000000000000000000003", "1e00000000000000000000000003"),
    (" 2 ", "2"),             # UnmarshalJSON trims whitespace
])
def test_canonical(text: str, expected: str) -> None:
    assert canonical(text) == expected


@pytest.mark.parametrize(("number", "expected"), [(1000, "1k"), (0.5, "500m"), (2, "2"), (1e16, "10e15")])
def test_json_numbers(number: float, expected: str) -> None:
    assert canonical(number) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("64Mi", Fraction(64 * 2**20)),
    ("250m", Fraction(1, 4)),
    ("1.5", Fraction(3, 2)),
    ("1e-20", Fraction(1, 10**9)),
    ("2Gi", Fraction(2 * 2**30)),
])
def test_parse(text: str, expected: Fraction) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("", ERR_FORMAT),
    ("abc", ERR_FORMAT),
    ("1 x", ERR_FORMAT),
    ("1.5.5", ERR_FORMAT),
    (True, ERR_FORMAT),
    ("1Kii", "unable to parse quantity's suffix"),
    ("1ki", "unable to parse quantity's suffix"),
    ("1e", "unable to parse quantity's suffix"),
    ("1e1000000", "unable to parse numeric part of quantity"),
])
def test_errors(text: str, message: str) -> None:
    with pytest.raises(QuantityError) as info:
        parse_quantity(text)
    assert str(info.value) == message


def test_format_error_text_is_upstreams() -> None:
    assert ERR_FORMAT == "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"


@pytest.mark.parametrize(("text", "milli", "whole"), [
    ("100m", 100, 1), ("1", 1000, 1), ("1.5", 1500, 2), ("64Mi", 64 * 2**20 * 1000, 64 * 2**20), ("1n", 1, 1), ("0", 0, 0),
])
def test_scaled_values_round_up(text: str, milli: int, whole: int) -> None:
    assert milli_value(text) == milli
    assert value(text) == whole
    assert milli_value(parse_quantity(text)) == milli


@pytest.mark.parametrize(("text", "expected"), [
    ("0.1m", "1m"), ("100u", "1m"), ("1n", "1m"), ("-1n", "-1m"), ("1.500", "1.500"), ("500m", "500m"), ("0.5", "500m"),
    ("1Ki", "1Ki"), ("1e-20", "1e-3"),
])
def test_round_up_milli(text: str, expected: str) -> None:
    assert round_up_milli(text) == expected
