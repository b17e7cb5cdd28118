"""Elasticsearch time values and byte sizes, parsed exactly as Elasticsearch parses them.

`parse_time_value` follows `TimeValue.parseTimeValue` and `parse_byte_size` follows
`ByteSizeValue.parseBytesSizeValue`: the same units, case rules, special values (0, -1), decimals
and rounding, and every error message word for word, so that the `_ml` face answers a bad
`timeout` or `cache_size` as Elasticsearch does. One addition: a byte size given as a JSON integer
is a number of bytes (ES would refuse it as "unit is missing"); a string still needs its unit.
Java's number syntax (`Long.parseLong`, `Double.parseDouble`, `BigDecimal`) is mirrored by regular
expressions, since Python's `int()`/`float()` accept more (underscores, "nan", Unicode digits).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from modelfleet.core.errors import ValidationFailed

LONG_MAX = 2**63 - 1


class ParamError(ValidationFailed):
    """A value that does not parse; `error_type` is the Elasticsearch exception type to report."""

    def __init__(self, message: str, setting: str, error_type: str) -> None:
        super().__init__(message, setting)
        self.error_type = error_type


# ---------------------------------------------------------------- Java number syntax

_JAVA_LONG = re.compile(r"[+-]?[0-9]+")
_JAVA_DOUBLE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[fFdD]?")
_BIG_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_JAVA_BLANKS = "".join(chr(code) for code in range(0x21))  # String.trim() drops chars <= U+0020


def _trim(text: str) -> str:
    return text.strip(_JAVA_BLANKS)


def _java_long(text: str) -> int | None:
    """`Long.parseLong`: the value, or None where Java throws NumberFormatException."""
    if not _JAVA_LONG.fullmatch(text):
        return None
    value = int(text)
    return value if -(2**63) <= value <= LONG_MAX else None


# ---------------------------------------------------------------- time values


class TimeUnit(StrEnum):
    NANOS = "nanos"
    MICROS = "micros"
    MILLIS = "ms"
    SECONDS = "s"
    MINUTES = "m"
    HOURS = "h"
    DAYS = "d"


_NANOS_PER = {
    TimeUnit.NANOS: 1,
    TimeUnit.MICROS: 1_000,
    TimeUnit.MILLIS: 1_000_000,
    TimeUnit.SECONDS: 1_000_000_000,
    TimeUnit.MINUTES: 60_000_000_000,
    TimeUnit.HOURS: 3_600_000_000_000,
    TimeUnit.DAYS: 86_400_000_000_000,
}


@dataclass(frozen=True)
class TimeValue:
    """An ES time value: `duration` units; -1 is the special "unset / no limit" value."""

    duration: int
    unit: TimeUnit = TimeUnit.MILLIS

    @property
    def nanos(self) -> int:
        """Nanoseconds, saturating like Java's `TimeUnit.toNanos`."""
        return max(-LONG_MAX - 1, min(LONG_MAX, self.duration * _NANOS_PER[self.unit]))

    @property
    def seconds(self) -> float:
        return self.nanos / 1e9

    def string_rep(self) -> str:
        """ES's `getStringRep`: parses back to the same value."""
        return str(self.duration) if self.duration < 0 else f"{self.duration}{self.unit}"


MINUS_ONE = TimeValue(-1)

# Checked in this order, as ES does ("ms" before "s", "micros"/"nanos" before "s").
_TIME_SUFFIXES = (
    ("nanos", TimeUnit.NANOS),
    ("micros", TimeUnit.MICROS),
    ("ms", TimeUnit.MILLIS),
    ("s", TimeUnit.SECONDS),
    ("m", TimeUnit.MINUTES),
    ("h", TimeUnit.HOURS),
    ("d", TimeUnit.DAYS),
)


def parse_time_value(value: str, setting: str) -> TimeValue:
    """`TimeValue.parseTimeValue`: "30s", "500ms", "1m", "2h", "1d", "-1", "0"; units are required.

    Minutes are case-sensitive ("1M" is refused: M would be months); other units are not.
    """
    normalized = _trim(value.lower())
    for suffix, unit in _TIME_SUFFIXES:
        # Only "m" is matched against the value as given: ES keeps it case-sensitive.
        matched = value.endswith(suffix) if unit is TimeUnit.MINUTES else normalized.endswith(suffix)
        if matched:
            return TimeValue(_time_number(value, normalized, suffix, setting), unit)
    if re.fullmatch(r"-0*1", normalized):
        return MINUS_ONE
    if re.fullmatch(r"0+", normalized):
        return TimeValue(0)
    raise ParamError(
        f"failed to parse setting [{setting}] with value [{value}] as a time value: "
        "unit is missing or unrecognized",
        setting,
        "illegal_argument_exception",
    )


def parse_time_seconds(value: str, setting: str) -> float:
    """`parse_time_value` in seconds (-1 gives a negative number, which start validation refuses)."""
    return parse_time_value(value, setting).seconds


def _time_number(value: str, normalized: str, suffix: str, setting: str) -> int:
    number = _trim(normalized[: -len(suffix)])
    parsed = _java_long(number)
    if parsed is not None:
        if parsed < -1:  # -1 is the special value; any other negative is refused
            raise ParamError(
                f"failed to parse setting [{setting}] with value [{value}] as a time value: "
                "negative durations are not supported",
                setting,
                "illegal_argument_exception",
            )
        return parsed
    if _JAVA_DOUBLE.fullmatch(number):
        message = f"failed to parse [{value}], fractional time values are not supported"
    else:
        message = f"failed to parse [{value}]"
    raise ParamError(message, setting, "illegal_argument_exception")


# ---------------------------------------------------------------- byte sizes


class ByteUnit(StrEnum):
    BYTES = "b"
    KB = "kb"
    MB = "mb"
    GB = "gb"
    TB = "tb"
    PB = "pb"

    @property
    def size(self) -> int:
        return int(1024 ** list(ByteUnit).index(self))


# Checked in this order, as ES does: the one-letter forms first, plain "b" last.
_BYTE_SUFFIXES = (
    ("k", ByteUnit.KB),
    ("kb", ByteUnit.KB),
    ("m", ByteUnit.MB),
    ("mb", ByteUnit.MB),
    ("g", ByteUnit.GB),
    ("gb", ByteUnit.GB),
    ("t", ByteUnit.TB),
    ("tb", ByteUnit.TB),
    ("p", ByteUnit.PB),
    ("pb", ByteUnit.PB),
)
_EXACT_BYTES = {"0": 0, "0b": 0, "0B": 0, "1b": 1, "1B": 1, "-1": -1, "-1b": -1, "-1B": -1}


def parse_byte_size(value: str | int, setting: str) -> int:
    """`ByteSizeValue.parseBytesSizeValue` in bytes: "100mb", "0b", "1gb", "512kb", "1.5gb", -1.

    Units b, k/kb, m/mb, g/gb, t/tb, p/pb (powers of 1024), any case; up to two decimals, rounded up
    to whole bytes. A JSON integer (a Python int) is a number of bytes.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if value < -1:
            raise _size_error(setting, str(value), " as a size in bytes")
        return value
    text = str(value).lower() if isinstance(value, bool) else value
    if text in _EXACT_BYTES:
        return _EXACT_BYTES[text]
    lower = _trim(text.lower())
    for suffix, unit in _BYTE_SUFFIXES:
        if lower.endswith(suffix):
            return _size_in_unit(text, lower, suffix, unit, setting)
    if lower.endswith("b"):
        count = _java_long(_trim(lower[:-1]))
        if count is None:
            raise _size_error(setting, text)
        if count < -1:
            raise _size_error(setting, text, " as a size in bytes")
        return count
    raise ParamError(
        f"failed to parse setting [{setting}] with value [{text}] as a size in bytes: "
        "unit is missing or unrecognized",
        setting,
        "parse_exception",
    )


def _size_error(setting: str, value: str, tail: str = "") -> ParamError:
    return ParamError(
        f"failed to parse setting [{setting}] with value [{value}]{tail}", setting, "parse_exception"
    )


def _size_in_unit(value: str, lower: str, suffix: str, unit: ByteUnit, setting: str) -> int:
    number = _trim(lower[: -len(suffix)])
    whole = _java_long(number)
    if whole is not None:
        if whole < 0 or whole > LONG_MAX // unit.size:  # -1 is special in bytes only
            raise _size_error(setting, value, " as a size in bytes")
        return whole * unit.size
    if not _BIG_DECIMAL.fullmatch(number):
        raise _size_error(setting, value)
    decimal = Decimal(number)
    exponent = decimal.as_tuple().exponent
    if decimal < 0:
        raise _size_error(setting, value)
    if isinstance(exponent, int) and -exponent > 2:
        raise ParamError(
            f"failed to parse setting [{setting}] with more than two decimals in value [{value}]",
            setting,
            "parse_exception",
        )
    size = math.ceil(decimal * unit.size)  # rounded up: never less than was asked for
    if size > LONG_MAX:
        raise ParamError(
            f"failed to parse setting [{setting}] with value beyond {LONG_MAX}: [{value}]",
            setting,
            "parse_exception",
        )
    return size


def format_byte_size(size: int) -> str:
    """ES's `getStringRep`: the largest unit that holds `size` exactly; parses back to `size`."""
    if size <= 0:
        return str(size)
    for unit in reversed(ByteUnit):
        if size % unit.size == 0:
            return f"{size // unit.size}{unit}"
    raise AssertionError("unreachable: every size is a whole number of bytes")
