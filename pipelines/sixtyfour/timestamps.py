"""API timestamps (any offset, any precision, or none) to UTC instants.

A batch's columns are read by Arrow (`to_utc_array`), a page's keys by Python's ISO reader
(`read_each`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pendulum
import pyarrow as pa
import pyarrow.compute as pc

UTC_MICROS = pa.timestamp("us", tz="UTC")


class BadTimestamp(ValueError):
    """A value that is not a readable ISO-8601 date-time, or one outside years 1 to 9999 in
    UTC (`out_of_range`)."""

    def __init__(self, value: object, out_of_range: bool = False) -> None:
        what = "outside years 1 to 9999 in UTC" if out_of_range else "not an ISO-8601 date-time"
        super().__init__(f"{value!r} is {what}")
        self.value = value
        self.out_of_range = out_of_range


# Arrow's cast reads `YYYY-MM-DD[T ]hh[:mm[:ss[.f]]]` and a zone (`Z`, `+hh`, `+hhmm`,
# `+hh:mm`), which a zoned type requires. Stripped of its trailing digits, `:` and `.`, such a
# value keeps `YYYY-MM-DDT` alone (11 characters) if it has no zone, and its `Z`, `+` or `-`
# too if it has one: two cheap kernels find the values that get `+00:00` appended before the
# one cast, where a regular expression cost more than the cast. A value Arrow cannot read
# fails the cast, and then every value goes through `parse_instant`, as they always did.
_TIME_CHARACTERS = "0123456789:."
_DATE_AND_SEPARATOR = pa.scalar(len("YYYY-MM-DDT"), pa.int32())
_UTC_OFFSET = pa.scalar("+00:00", pa.string())
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)


def to_utc_array(values: Sequence[Any] | pa.Array) -> pa.Array:
    """Parse API timestamps to a UTC timestamp array; None stays null.

    The vectorised Arrow cast reads `Z`, `+hh:mm`, `+hhmm` and `+hh` offsets and fractions up
    to microseconds. Values without an offset (UTC, per the API notes) are cast apart with
    `+00:00` appended, still vectorised. If Arrow cannot read some value even so (nanoseconds,
    odd forms, a date alone), every value goes through `parse_instant`.

    Raises:
        BadTimestamp: for the first value that is not a date-time at all.
    """
    try:
        text = pa.array(values, pa.string())
    except _ARROW_ERRORS:
        return _parse_each(values)
    naive = pc.less_equal(
        pc.binary_length(pc.ascii_rtrim(text, _TIME_CHARACTERS)), _DATE_AND_SEPARATOR
    )
    try:
        if pc.any(naive).as_py():
            # Nulls stay null through each step: the mask is null where the text is.
            text = pc.if_else(naive, pc.binary_join_element_wise(text, _UTC_OFFSET, ""), text)
        instants = pc.cast(text, UTC_MICROS)
    except _ARROW_ERRORS:
        return _parse_each(values)
    # Arrow reads instants before year 1 or after 9999 in UTC, which Python's datetime (the
    # sync reading a run back) and PostgreSQL refuse: each such value goes the thorough way,
    # which names it.
    bounds = pc.min_max(instants.cast(pa.int64())).as_py()
    if bounds["min"] is not None and (
        bounds["min"] < _FIRST_MICROS or bounds["max"] > _LAST_MICROS
    ):
        return _parse_each(values)
    return instants


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)  # a value without offset is UTC
_MICROSECOND = timedelta(microseconds=1)


def to_micros(instant: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    return (instant - _EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    """The UTC instant `micros` microseconds after the epoch."""
    return _EPOCH + micros * _MICROSECOND


# The first and last microsecond a UTC datetime holds.
_FIRST_MICROS = to_micros(datetime.min.replace(tzinfo=UTC))
_LAST_MICROS = to_micros(datetime.max.replace(tzinfo=UTC))


def read_each(values: Sequence[Any]) -> list[datetime] | None:
    """API timestamps each read by Python's ISO reader; one without an offset stays naive (UTC).

    For the few hundred values of one page: Arrow's cast costs less per value, but every
    Arrow call hands the interpreter to another thread, and while the threads fetching the
    next pages have work, the thread reading the pages then waits to get it back.

    Returns None when some value is not text this reader takes as it is (a lowercase `z`, a
    word, None): `to_utc_array` reads those, or names the bad value.
    """
    try:
        return list(map(datetime.fromisoformat, values))
    except (TypeError, ValueError):
        return None


def micros_each(instants: Iterable[datetime]) -> list[int]:
    """Microseconds since the epoch of instants read by `read_each` (naive ones are UTC).

    Raises:
        OverflowError: in UTC, an instant lies before year 1 or after year 9999.
    """
    micros = [
        (instant - _NAIVE_EPOCH) // _MICROSECOND
        if instant.tzinfo is None
        else (instant - _EPOCH) // _MICROSECOND
        for instant in instants
    ]
    if micros and (min(micros) < _FIRST_MICROS or max(micros) > _LAST_MICROS):
        raise OverflowError("an instant no UTC datetime holds")
    return micros


def as_utc(instant: datetime) -> datetime:
    """An instant as read (without an offset: UTC) as an aware UTC datetime.

    Raises:
        OverflowError: in UTC, the instant lies before year 1 or after year 9999.
    """
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)


def _parse_each(values: Sequence[Any] | pa.Array) -> pa.Array:
    if isinstance(values, pa.Array):
        values = values.to_pylist()
    return pa.array([None if v is None else parse_instant(v) for v in values], UTC_MICROS)


def parse_instant(value: Any) -> datetime:
    """One API timestamp as an aware UTC datetime; a value without offset is taken as UTC."""
    # pendulum also reads words ("now" would become the time of the sync): a date-time
    # starts with its year.
    if not isinstance(value, str) or not value[:4].isdigit():
        raise BadTimestamp(value)
    if value.endswith("z"):
        value = value[:-1] + "Z"  # RFC 3339 allows a lowercase z; Python's reader does not
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = pendulum.parse(value, exact=True)  # type: ignore[assignment]
        except (ValueError, pendulum.parsing.exceptions.ParserError):
            raise BadTimestamp(value) from None
        if not isinstance(parsed, datetime):
            raise BadTimestamp(value) from None
    try:
        instant = as_utc(parsed)
    except ValueError:  # an offset of 24 hours or more
        raise BadTimestamp(value) from None
    except OverflowError:
        raise BadTimestamp(value, out_of_range=True) from None
    if type(instant) is not datetime:
        # pendulum's own DateTime, whose arithmetic answers pendulum's types (an Interval
        # where a duration needs a timedelta).
        instant = datetime(*instant.timetuple()[:6], instant.microsecond, tzinfo=UTC)
    return instant
