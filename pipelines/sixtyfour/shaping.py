"""API JSON objects to the Arrow tables the pipeline loads (one function per table).

Rows reach dlt as Arrow tables built here rather than nested dicts for dlt's JSON
normaliser: on this data that path is several times slower, and the columns are known.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import compress, repeat
from operator import itemgetter, not_
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.sixtyfour import settings
from pipelines.sixtyfour.errors import ApiResponseError
from pipelines.sixtyfour.timestamps import UTC_MICROS, BadTimestamp, parse_instant, to_utc_array

_KNOWN_RUN_FIELDS = frozenset(
    settings.RUN_TIMESTAMP_FIELDS
    + settings.RUN_TEXT_FIELDS
    + settings.RUN_INTEGER_FIELDS
    + settings.RUN_NESTED_FIELDS
)
_REQUIRED_TIMESTAMPS = frozenset(settings.RUN_REQUIRED_FIELDS) & set(settings.RUN_TIMESTAMP_FIELDS)
# A value that arrives with another type than the column's keeps its text here (dlt's name
# for a variant column), so a type change in the API never fails a sync nor loses the value.
VARIANT_SUFFIX = "__v_text"


# The known scalar fields with the types the API documents (timestamps still as text).
_RUN_STRUCT = pa.struct(
    [pa.field(name, pa.string()) for name in settings.RUN_TEXT_FIELDS]
    + [pa.field(name, pa.string()) for name in settings.RUN_TIMESTAMP_FIELDS]
    + [pa.field(name, pa.int64()) for name in settings.RUN_INTEGER_FIELDS]
)
_REQUIRED_STRUCT = pa.struct([_RUN_STRUCT.field(name) for name in settings.RUN_REQUIRED_FIELDS])


def runs_table(runs: Sequence[dict[str, Any]], where: str) -> pa.Table:
    """workflow_runs rows: every API field a column, timestamps as UTC instants.

    Args:
        runs: run objects as the list endpoint sent them.
        where: the request they came from, named in errors.

    Raises:
        ApiResponseError: a run lacks a required field or has an unreadable cursor timestamp.
    """
    typed = _typed_fields(runs)
    _check_required(runs, where, typed)
    columns: dict[str, pa.Array] = {}
    if typed is not None:
        for name in settings.RUN_TEXT_FIELDS + settings.RUN_INTEGER_FIELDS:
            columns[name] = typed.field(name)
        for name in settings.RUN_TIMESTAMP_FIELDS:
            _timestamp_column(columns, name, typed.field(name), where)
    else:
        for name in settings.RUN_TEXT_FIELDS:
            columns[name] = _text_array([run.get(name) for run in runs])
        for name in settings.RUN_TIMESTAMP_FIELDS:
            _timestamp_column(columns, name, [run.get(name) for run in runs], where)
        for name in settings.RUN_INTEGER_FIELDS:
            _integer_column(columns, name, [run.get(name) for run in runs])
    for name in sorted(_extra_fields(runs)):
        # Fields the API added later: kept as text so a later type change cannot break loads.
        columns[name] = _text_array([run.get(name) for run in runs])
    return _with_keys(pa.table(columns), "job_id")


def page_keys(runs: Sequence[dict[str, Any]], where: str) -> tuple[list[str], list[int], list[Any]]:
    """Check a page's runs and return their job_ids, updated_at (microseconds) and statuses.

    Raises:
        ApiResponseError: a run lacks a required field or has an unreadable cursor timestamp.
    """
    typed = _typed_fields(runs, _REQUIRED_STRUCT)
    _check_required(runs, where, typed)
    columns: dict[str, pa.Array] = {}
    for name in sorted(_REQUIRED_TIMESTAMPS):
        values = typed.field(name) if typed is not None else [run.get(name) for run in runs]
        _timestamp_column(columns, name, values, where)
    updated = columns["updated_at"].cast(pa.int64()).to_pylist()
    return [run["job_id"] for run in runs], updated, [run.get("status") for run in runs]


def metrics_table(runs: Iterable[dict[str, Any]]) -> pa.Table:
    """workflow_runs__metrics rows: one per run and metric, nested keys joined with dots.

    The batch is flattened a key at a time: the values one key holds across the runs become
    one Arrow array. The values of a key that Arrow cannot take as one array of numbers (text,
    lists, JSON null, numbers in some runs and text in others) are flattened one at a time.

    A run can name a metric twice (a key "a.b" beside {"a": {"b": ...}}): the value later in
    its key order is kept, so each (job_id, metric) has one row, as the loader is told.
    """
    runs = list(runs)
    metrics: list[Any] = [run.get("metrics") for run in runs]
    rows = _MetricRows()
    objects = [index for index, value in enumerate(metrics) if type(value) is dict and value]
    if objects:
        _flatten_level(rows, [metrics[index] for index in objects], objects, "")
    # The other runs hold None or {} (rarely another empty value): found without a Python
    # loop over the batch, unless some run holds a non-empty value that is not an object.
    others = list(compress(range(len(metrics)), map(not_, metrics)))
    if len(objects) + len(others) < len(metrics):
        others = [index for index, value in enumerate(metrics) if not _is_object(value)]
    markers: list[int] = []
    for index in others:
        value = metrics[index]
        if value is None or (type(value) is dict and not value):
            markers.append(index)
        else:
            # Not the documented object: keep it whole rather than drop it.
            rows.add_leaf(index, "", value)
    job_ids = pa.array([run["job_id"] for run in runs], pa.string())
    table = rows.table(job_ids)
    if rows.colliding:
        # Only runs with an empty or dotted key can repeat a name: those are redone one by one.
        colliding = sorted(rows.colliding)
        unique = _MetricRows()
        for index in colliding:
            for name, value in _leaves_by_name(metrics[index]).items():
                unique.add_leaf(index, name, value)
        redone = pc.is_in(table.column("job_id"), value_set=job_ids.take(colliding))
        table = pa.concat_tables([table.filter(pc.invert(redone)), unique.table(job_ids)])
    if not markers:
        return table
    # A run merged again without metrics must lose its old rows too: one marker row per such
    # run makes dlt's merge delete the run's rows (merge key) and is itself never inserted.
    marker_table = _metrics_arrow(
        [runs[index]["job_id"] for index in markers],
        [""] * len(markers),
        [None] * len(markers),
        [None] * len(markers),
    ).set_column(4, METRICS_MARKER, pa.array([True] * len(markers)))
    return pa.concat_tables([table, marker_table])


_NUMBER_TYPES = frozenset({int, float})  # exact types: a bool is kept as JSON text
_BOOL_AS_FLOAT = pa.array([0.0, 1.0])


class _MetricRows:
    """The metric rows of a batch, gathered a key at a time or a value at a time.

    Runs are named by their index in the batch until `table` looks up their job_ids.
    """

    def __init__(self) -> None:
        self.columns: list[tuple[pa.Array, str, pa.Array | None, pa.Array | None]] = []
        self.runs: list[int] = []
        self.names: list[str] = []
        self.values: list[Any] = []
        self.texts: list[str | None] = []
        # Runs with a key that is empty or holds a dot: they may name one metric twice.
        self.colliding: set[int] = set()

    def add_numbers(self, runs: pa.Array, name: str, numbers: pa.Array) -> None:
        self.columns.append((runs, name, numbers, None))

    def add_texts(self, runs: pa.Array, name: str, texts: pa.Array) -> None:
        self.columns.append((runs, name, None, texts))

    def add_leaf(self, run: int, name: str, value: Any) -> None:
        self.runs.append(run)
        self.names.append(name)
        if type(value) in _NUMBER_TYPES:
            self.values.append(value)
            self.texts.append(None)
        else:
            self.values.append(None)
            self.texts.append(orjson.dumps(value).decode())

    def table(self, job_ids: pa.Array) -> pa.Table:
        """The rows with their runs' job_ids, in METRICS_SCHEMA."""
        runs, names, values, texts = [], [], [], []
        for run_indices, name, numbers, text in self.columns:
            size = len(run_indices)
            runs.append(run_indices)
            names.append(pa.repeat(pa.scalar(name, pa.string()), size))
            values.append(pa.nulls(size, pa.float64()) if numbers is None else numbers)
            texts.append(pa.nulls(size, pa.string()) if text is None else text)
        runs.append(pa.array(self.runs, pa.int32()))
        names.append(pa.array(self.names, pa.string()))
        values.append(pa.array(self.values, pa.float64()))
        texts.append(pa.array(self.texts, pa.string()))
        run_indices = pa.concat_arrays(runs)
        return pa.Table.from_arrays(
            [
                job_ids.take(run_indices),
                pa.concat_arrays(names),
                pa.concat_arrays(values),
                pa.concat_arrays(texts),
                pa.nulls(len(run_indices), pa.bool_()),
            ],
            schema=METRICS_SCHEMA,
        )


def _flatten_level(
    rows: _MetricRows,
    objects: list[dict[str, Any]],
    runs: list[int],
    prefix: str,
    run_array: pa.Array | None = None,
) -> None:
    """The rows of same-level metrics objects (`objects[i]` belongs to run `runs[i]`)."""
    # Key by key rather than pa.array(objects): Arrow's own conversion to a struct costs as
    # much here and fails whole when one key's values change type (a row_count of "unknown").
    if run_array is None:
        run_array = pa.array(runs, pa.int32())
    sizes = list(map(len, objects))
    shortest = objects[sizes.index(min(sizes))]
    shared: list[str] = []
    for key in shortest:
        try:
            column = list(map(itemgetter(key), objects))
        except KeyError:
            continue
        shared.append(key)
        _flatten_key(rows, key, column, runs, run_array, prefix)
    if len(shared) == len(shortest):
        # Every object holds the shortest one's keys: only a longer one can hold another.
        if sizes.count(len(shortest)) == len(sizes):
            return
        longer = list(compress(range(len(objects)), map(len(shortest).__lt__, sizes)))
        objects, runs = [objects[index] for index in longer], [runs[index] for index in longer]
    for key in sorted(set().union(*objects).difference(shared)):
        # Read from the objects holding it only: a None left in the column is a JSON null.
        held = list(map(dict.__contains__, objects, repeat(key)))
        column = list(map(itemgetter(key), compress(objects, held)))
        key_runs = list(compress(runs, held))
        _flatten_key(rows, key, column, key_runs, pa.array(key_runs, pa.int32()), prefix)


def _flatten_key(
    rows: _MetricRows,
    key: str,
    column: list[Any],
    runs: list[int],
    run_array: pa.Array,
    prefix: str,
) -> None:
    """The rows of one key, from its value in each object holding it."""
    if not key or "." in key:
        rows.colliding.update(runs)
    _flatten_column(rows, column, runs, run_array, prefix + key)


def _flatten_column(
    rows: _MetricRows, column: list[Any], runs: list[int], run_array: pa.Array, name: str
) -> None:
    """The rows of one key's values, one per run."""
    if type(next((value for value in column if value is not None), None)) is dict:
        if set(map(type, column)) == {dict} and {} not in column:
            _flatten_level(rows, column, runs, name + ".", run_array)
        else:
            _flatten_mixed(rows, column, runs, run_array, name)
        return
    try:
        array = pa.array(column)  # one type for all, or it fails
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        array = None
    if array is None or array.null_count:
        _flatten_mixed(rows, column, runs, run_array, name)
    elif pa.types.is_integer(array.type) or (
        pa.types.is_floating(array.type) and not _holds_bool(column, array)
    ):
        # The cast fails past 2**53 like the conversion of each value did.
        rows.add_numbers(run_array, name, array.cast(pa.float64()))
    elif pa.types.is_boolean(array.type):
        rows.add_texts(run_array, name, pc.if_else(array, "true", "false"))
    else:
        _flatten_mixed(rows, column, runs, run_array, name)


def _holds_bool(column: list[Any], numbers: pa.Array) -> bool:
    """Whether Arrow read a bool as 1.0 or 0.0 among floats."""
    suspects = pc.indices_nonzero(pc.is_in(numbers, value_set=_BOOL_AS_FLOAT))
    return any(type(column[index]) is bool for index in suspects.to_pylist())


def _flatten_mixed(
    rows: _MetricRows, column: list[Any], runs: list[int], run_array: pa.Array, name: str
) -> None:
    """Numbers at once, objects a level down, the rest (text, null, lists...) one by one."""
    numbers = list(column)
    objects: list[dict[str, Any]] = []
    object_runs: list[int] = []
    # The indices of the values that are not numbers, without a Python loop over them all.
    others = compress(
        range(len(column)), map(not_, map(_NUMBER_TYPES.__contains__, map(type, column)))
    )
    for index in others:
        value = numbers[index]
        numbers[index] = None
        if _is_object(value):
            objects.append(value)
            object_runs.append(runs[index])
        else:
            rows.add_leaf(runs[index], name, value)
    array = pa.array(numbers, pa.float64())
    if array.null_count < len(array):
        held = array.is_valid()
        rows.add_numbers(run_array.filter(held), name, array.filter(held))
    if objects:
        _flatten_level(rows, objects, object_runs, name + ".")


def _is_object(value: Any) -> bool:
    return type(value) is dict and bool(value)


def _leaves_by_name(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A run's metrics by flattened name; of two values with one name, the later one."""
    leaves: dict[str, Any] = {}
    for key, value in metrics.items():
        if type(value) is dict and value:
            leaves.update(_leaves_by_name(value, f"{prefix}{key}."))
        else:
            leaves[prefix + key] = value
    return leaves


# Column that flags a run's "no metrics any more" marker row (dlt's hard_delete hint).
METRICS_MARKER = "_no_metrics"
METRICS_SCHEMA = pa.schema(
    [
        pa.field("job_id", pa.string(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("value_text", pa.string()),
        pa.field(METRICS_MARKER, pa.bool_()),
    ]
)


def _metrics_arrow(
    job_ids: list[str], names: list[str], values: list[float | None], texts: list[str | None]
) -> pa.Table:
    return pa.Table.from_arrays(
        [
            pa.array(job_ids, pa.string()),
            pa.array(names, pa.string()),
            pa.array(values, pa.float64()),
            pa.array(texts, pa.string()),
            pa.nulls(len(job_ids), pa.bool_()),
        ],
        schema=METRICS_SCHEMA,
    )


BLOCK_TIMESTAMP_FIELDS = ("started_at", "completed_at", "last_updated")
BLOCK_INTEGER_FIELDS = (
    "sequence_number",
    "processed_count",
    "total_count",
    "estimated_total_count",
    "row_count",
)
BLOCK_FLOAT_FIELDS = ("progress_percentage",)
BLOCK_TEXT_FIELDS = (
    "block_id",
    "block_name",
    "status",
    "current_step",
    "error_message",
    "dataframe_type",
    "previous_block_ids",
)


def blocks_table(job_blocks: Iterable[tuple[str, str, list[Any]]]) -> pa.Table:
    """workflow_runs__blocks rows from (job_id, source, blocks) triples.

    `source` says where the blocks were read: `list` (a list payload) or `live_status`.
    Block metrics (row_count, dataframe_type, ...) are lifted to columns.
    """
    rows: list[dict[str, Any]] = []
    for job_id, source, blocks in job_blocks:
        for index, block in enumerate(blocks):
            row = dict(block) if isinstance(block, dict) else {"value": block}
            metrics = row.pop("metrics", None)
            if isinstance(metrics, dict):
                for key, value in metrics.items():
                    row.setdefault(key, value)
            row["job_id"], row["block_index"], row["source"] = job_id, index, source
            rows.append(row)
    columns: dict[str, pa.Array] = {
        "job_id": pa.array([r["job_id"] for r in rows], pa.string()),
        "block_index": pa.array([r["block_index"] for r in rows], pa.int64()),
        "source": pa.array([r["source"] for r in rows], pa.string()),
    }
    for name in BLOCK_TEXT_FIELDS:
        columns[name] = _text_array([r.get(name) for r in rows])
    for name in BLOCK_INTEGER_FIELDS:
        _integer_column(columns, name, [r.get(name) for r in rows])
    for name in BLOCK_FLOAT_FIELDS:
        columns[name] = _float_array([r.get(name) for r in rows])
    for name in BLOCK_TIMESTAMP_FIELDS:
        _timestamp_column(columns, name, [r.get(name) for r in rows], "live_status")
    known = set(columns) | {"metrics"}
    extra = {key for r in rows for key in r} - known
    for name in sorted(extra):
        columns[name] = _text_array([r.get(name) for r in rows])
    return _with_keys(pa.table(columns), "job_id", "block_index")


def details_table(details: Sequence[tuple[str, dict[str, Any]]], fetched_at: Any) -> pa.Table:
    """workflow_run_details rows: that a run's live_status was read, and its summary fields."""
    live = [d for _, d in details]
    columns: dict[str, pa.Array] = {
        "job_id": pa.array([job_id for job_id, _ in details], pa.string()),
        "overall_status": _text_array([d.get("overall_status") for d in live]),
        "total_blocks": _int_or_null([d.get("total_blocks") for d in live]),
        "completed_blocks": _int_or_null([d.get("completed_blocks") for d in live]),
        "overall_progress_percentage": _float_array(
            [d.get("overall_progress_percentage") for d in live]
        ),
        "fetched_at": pa.array([fetched_at] * len(details), UTC_MICROS),
    }
    _timestamp_column(columns, "last_updated", [d.get("last_updated") for d in live], "live")
    return _with_keys(pa.table(columns), "job_id")


def workflows_table(workflows: Sequence[dict[str, Any]]) -> pa.Table:
    """workflows rows, one per workflow."""
    known_text = ("id", "user_uuid", "org_id", "name", "description", "status", "step")
    columns: dict[str, pa.Array] = {}
    for name in known_text:
        columns[name] = _text_array([w.get(name) for w in workflows])
    for name in settings.WORKFLOW_TIMESTAMP_FIELDS:
        _timestamp_column(columns, name, [w.get(name) for w in workflows], "/workflows")
    columns["workflow_definition"] = _text_array([w.get("workflow_definition") for w in workflows])
    extra = {k for w in workflows for k in w} - set(columns)
    for name in sorted(extra):
        columns[name] = _text_array([w.get(name) for w in workflows])
    return _with_keys(pa.table(columns), "id")


def _with_keys(table: pa.Table, *keys: str) -> pa.Table:
    """Mark key columns not-null in the Arrow schema, as dlt's key hints declare them."""
    schema = table.schema
    for key in keys:
        index = schema.get_field_index(key)
        schema = schema.set(index, schema.field(index).with_nullable(False))
    return table.cast(schema)


def _typed_fields(
    runs: Sequence[dict[str, Any]], fields: pa.StructType = _RUN_STRUCT
) -> pa.StructArray | None:
    """The known scalar fields of all runs, converted by Arrow at once.

    None when some value has another type than documented (a number sent as text, say):
    the caller then goes field by field and keeps such values as text.
    """
    try:
        typed = pa.array(runs, type=fields)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    assert isinstance(typed, pa.StructArray)
    return typed


def _present(values: pa.Array) -> bool:
    return values.null_count == 0 and not pc.any(pc.equal(values, "")).as_py()


def _check_required(
    runs: Sequence[dict[str, Any]], where: str, typed: pa.StructArray | None = None
) -> None:
    if typed is not None and all(_present(typed.field(f)) for f in settings.RUN_REQUIRED_FIELDS):
        return  # every run has them, and job_id is text: nothing to name
    for field in settings.RUN_REQUIRED_FIELDS:
        for run in runs:
            value = run.get(field)
            if value is None or value == "":
                job = run.get("job_id") or "a run"
                raise ApiResponseError(
                    f"GET {where} answered {job} without its required field '{field}'"
                )
    for run in runs:
        if type(run["job_id"]) is not str:
            raise ApiResponseError(f"GET {where} answered a job_id that is not a string")


def _extra_fields(runs: Sequence[dict[str, Any]]) -> set[str]:
    fields: set[str] = set()
    for run in runs:
        if len(run) > len(_KNOWN_RUN_FIELDS) or not run.keys() <= _KNOWN_RUN_FIELDS:
            fields.update(run.keys())
    return fields - _KNOWN_RUN_FIELDS


def _timestamp_column(
    columns: dict[str, pa.Array], name: str, values: Sequence[Any] | pa.Array, where: str
) -> None:
    try:
        columns[name] = to_utc_array(values)
        return
    except BadTimestamp as exc:
        if name in _REQUIRED_TIMESTAMPS:
            raise ApiResponseError(
                f"GET {where} answered an unreadable {name}: {exc.value!r}"
            ) from None
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
            raw.append(_as_text(value))
    columns[name] = pa.array(parsed, UTC_MICROS)
    columns[name + VARIANT_SUFFIX] = pa.array(raw, pa.string())


def _integer_column(columns: dict[str, pa.Array], name: str, values: list[Any]) -> None:
    try:
        columns[name] = pa.array(values, pa.int64())
        if not any(type(v) is bool for v in values):
            return
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        pass
    ints = [v if type(v) is int else None for v in values]
    columns[name] = pa.array(ints, pa.int64())
    columns[name + VARIANT_SUFFIX] = _text_array(
        [None if v is None or type(v) is int else v for v in values]
    )


def _int_or_null(values: list[Any]) -> pa.Array:
    return pa.array([v if type(v) is int else None for v in values], pa.int64())


def _float_array(values: list[Any]) -> pa.Array:
    return pa.array([float(v) if type(v) in (int, float) else None for v in values], pa.float64())


def _text_array(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values, pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else _as_text(v) for v in values], pa.string())


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()
