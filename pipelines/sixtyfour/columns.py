"""Arrow columns from API values: text, numbers and UTC instants, and their variant columns.

A value that arrives with another type than its column's keeps its text in a variant column
beside it, so a type change in the API never fails a sync nor loses the value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
import pyarrow as pa
from dlt.common.normalizers.naming.snake_case import NamingConvention

from pipelines.sixtyfour import settings
from pipelines.sixtyfour.errors import ApiResponseError
from pipelines.sixtyfour.timestamps import UTC_MICROS, BadTimestamp, parse_instant, to_utc_array

# dlt's name for a variant column.
VARIANT_SUFFIX = "__v_text"
# A run without a readable one of these cannot be placed against the cursor: the page is bad.
_REQUIRED_TIMESTAMPS = frozenset(settings.RUN_REQUIRED_FIELDS) & set(settings.RUN_TIMESTAMP_FIELDS)
# What a 64-bit integer column holds (the parser reads integers up to 2**64 - 1 as integers).
_INT64 = range(-(2**63), 2**63)
NUMBER_TYPES = frozenset({int, float})  # exact types: a bool is not a number (JSON knows it)
# How dlt names the warehouse's columns (its default naming convention).
_FOLD = NamingConvention().normalize_path


def with_keys(table: pa.Table, *keys: str) -> pa.Table:
    """Mark key columns not-null in the Arrow schema, as dlt's key hints declare them."""
    schema = table.schema
    for key in keys:
        index = schema.get_field_index(key)
        schema = schema.set(index, schema.field(index).with_nullable(False))
    return table.cast(schema)


def timestamp_column(
    columns: dict[str, pa.Array], name: str, values: Sequence[Any] | pa.Array, where: str
) -> None:
    """Add `name` as UTC instants; an unreadable optional value is null, its text kept beside.

    Raises:
        ApiResponseError: an unreadable value of a timestamp every run must have.
    """
    try:
        columns[name] = to_utc_array(values)
        return
    except BadTimestamp as exc:
        if name in _REQUIRED_TIMESTAMPS:
            article = "an" if name[0] in "aeiou" else "a"
            what = f"{article} {name} out of range" if exc.out_of_range else f"an unreadable {name}"
            raise ApiResponseError(f"GET {where} answered {what}: {exc.value!r}") from None
    if isinstance(values, pa.Array):
        values = values.to_pylist()
    # An optional timestamp that cannot be read: null in the column, its text kept beside it.
    parsed: list[Any] = []
    raw: list[str | None] = []
    for value in values:
        try:
            parsed.append(None if value is None else parse_instant(value))
            raw.append(None)
        except BadTimestamp:
            parsed.append(None)
            raw.append(as_text(value))
    columns[name] = pa.array(parsed, UTC_MICROS)
    columns[name + VARIANT_SUFFIX] = pa.array(raw, pa.string())


def integer_column(columns: dict[str, pa.Array], name: str, values: Sequence[Any]) -> None:
    """Add `name` as 64-bit integers (a whole float such as 1523.0 too); any other value (a
    fraction, a bool, an integer too large for 64 bits, text) is null there, its text kept
    beside."""
    try:
        columns[name] = pa.array(values, pa.int64())
        # Arrow cuts a fraction to an integer (1.5 to 1) without a word.
        if all(type(v) is int or v is None for v in values):
            return
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        pass
    _converted_column(columns, name, values, _as_int64, pa.int64())


def _as_int64(value: Any) -> int | None:
    """The value as a 64-bit integer (a whole float counts), or None if it is not one."""
    if type(value) is float and value.is_integer():
        value = int(value)
    return value if type(value) is int and value in _INT64 else None


def float_column(columns: dict[str, pa.Array], name: str, values: Sequence[Any]) -> None:
    """Add `name` as floats (integers included); any other value (a bool, text) is null there,
    its text kept beside."""
    _converted_column(columns, name, values, _as_float, pa.float64())


def _as_float(value: Any) -> float | None:
    return float(value) if type(value) in NUMBER_TYPES else None


def _converted_column(
    columns: dict[str, pa.Array],
    name: str,
    values: Sequence[Any],
    convert: Callable[[Any], Any],
    column_type: pa.DataType,
) -> None:
    """Add `name` as the values `convert` takes; the others (None from it) as text beside."""
    converted = list(map(convert, values))
    columns[name] = pa.array(converted, column_type)
    others = [
        None if kept is not None else value for value, kept in zip(values, converted, strict=True)
    ]
    if any(value is not None for value in others):
        columns[name + VARIANT_SUFFIX] = text_array(others)


def add_extra_columns(
    columns: dict[str, pa.Array], names: Iterable[str], values: Callable[[str], list[Any]]
) -> None:
    """Add fields the API added later, as text so that a later type change cannot break loads.

    dlt folds column names to snake_case, and two names folded alike fail the load
    (`workflowName` beside `workflow_name`): a field whose name folds like a column's before
    it (the known columns, then the other fields in sorted order) goes to `<folded
    name>__alias_<8 hex digits of its name>`. Beside a known column that is the same in every
    sync; two new fields folded alike share a column unless they meet in one batch.
    """
    names = sorted(names)
    if not names:
        return  # the usual batch: no name to fold
    taken = {""} | {_FOLD(name) for name in columns}  # "": a name dlt cannot fold at all
    for name in names:
        column, folded = name, _FOLD(name)
        if folded in taken:
            tag = hashlib.sha1(name.encode()).hexdigest()[:8]
            column = f"{folded or 'field'}__alias_{tag}"
            folded = _FOLD(column)
        taken.add(folded)
        columns[column] = text_array(values(name))


def text_array(values: list[Any]) -> pa.Array:
    """Text; a value of another type is kept as its JSON text."""
    try:
        return pa.array(values, pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else as_text(v) for v in values], pa.string())


def as_text(value: Any) -> str:
    """A value as a text column stores it: text as it is, anything else as its JSON text."""
    return value if isinstance(value, str) else orjson.dumps(value).decode()
