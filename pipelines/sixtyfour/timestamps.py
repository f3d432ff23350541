"""API timestamps (any offset, any precision, or none) to UTC instants in Arrow."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pendulum
import pyarrow as pa
import pyarrow.compute as pc

UTC_MICROS = pa.timestamp("us", tz="UTC")


class BadTimestamp(ValueError):
    """A value that is not a readable ISO-8601 date-time."""

    def __init__(self, value: object) -> None:
        super().__init__(f"{value!r} is not an ISO-8601 date-time")
        self.value = value


# The end of a timestamp that carries its own zone: Z, +hh:mm, +hhmm or +hh.
_HAS_ZONE = r"([Zz]|[+-]\d\d(:?\d\d)?)$"
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)


def to_utc_array(values: Sequence[Any] | pa.Array) -> pa.Array:
    """Parse API timestamps to a UTC timestamp array; None stays null.

    The vectorised Arrow cast reads `Z`, `+hh:mm` offsets and fractions up to microseconds.
    Values without an offset (UTC, per the API notes) get `+00:00` appended, still vectorised;
    what Arrow cannot read even then (nanoseconds, odd forms) goes through `parse_instant`.

    Raises:
        BadTimestamp: for the first value that is not a date-time at all.
    """
    try:
        text = pa.array(values, pa.string())
    except _ARROW_ERRORS:
        return _parse_each(values)
    try:
        return pc.cast(text, UTC_MICROS)
    except _ARROW_ERRORS:
        pass
    zoned = pc.if_else(
        pc.match_substring_regex(text, _HAS_ZONE),
        text,
        pc.binary_join_element_wise(text, "+00:00", ""),
    )
    try:
        return pc.cast(zoned, UTC_MICROS)
    except _ARROW_ERRORS:
        return _parse_each(values)


def _parse_each(values: Sequence[Any] | pa.Array) -> pa.Array:
    if isinstance(values, pa.Array):
        values = values.to_pylist()
    return pa.array([None if v is None else parse_instant(v) for v in values], UTC_MICROS)


def parse_instant(value: Any) -> datetime:
    """One API timestamp as an aware UTC datetime; a value without offset is taken as UTC."""
    if not isinstance(value, str):
        raise BadTimestamp(value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = pendulum.parse(value, exact=True)  # type: ignore[assignment]
        except (ValueError, pendulum.parsing.exceptions.ParserError):
            raise BadTimestamp(value) from None
        if not isinstance(parsed, datetime):
            raise BadTimestamp(value) from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
