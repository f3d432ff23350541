"""Run metrics to workflow_runs__metrics rows: one per run and metric, nested keys dotted.

Metrics keys are not documented and vary between runs (a `row_count` that is sometimes
"unknown"); flattening them is the largest part of shaping a batch, so it works a key at a
time across the batch rather than a run at a time.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import compress, repeat
from operator import itemgetter, not_
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.sixtyfour.columns import NUMBER_TYPES  # a bool is kept as JSON text


def metrics_table(runs: Iterable[dict[str, Any]], job_ids: pa.Array | None = None) -> pa.Table:
    """workflow_runs__metrics rows: one per run and metric, nested keys joined with dots.

    `job_ids`, when given, are the runs' job_ids in their order (the runs table's column):
    read again from the runs, they cost about as much as a key's flattening.

    The batch is flattened a key at a time: the values one key holds across the runs become
    one Arrow array. The values of a key that Arrow cannot take as one array of numbers (text,
    lists, JSON null, numbers in some runs and text in others) are flattened one at a time.

    A run can name a metric twice (a key "a.b" beside {"a": {"b": ...}}): the value later in
    its key order is kept, so each (job_id, metric) has one row, as the loader is told.
    """
    runs = list(runs)
    metrics: list[Any] = list(map(dict.get, runs, repeat("metrics")))
    rows = _MetricRows()
    if set(map(type, metrics)) <= _OBJECT_OR_NULL:
        # The documented payload: every non-empty value is an object, found in C.
        objects = list(compress(range(len(metrics)), metrics))
    else:
        objects = [index for index, value in enumerate(metrics) if _is_object(value)]
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
    if job_ids is None:
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
    marker_table = pa.Table.from_arrays(
        [
            job_ids.take(pa.array(markers, pa.int32())),
            pa.repeat(pa.scalar("", pa.string()), len(markers)),
            pa.nulls(len(markers), pa.float64()),
            pa.nulls(len(markers), pa.string()),
            pa.repeat(pa.scalar(True), len(markers)),
        ],
        schema=METRICS_SCHEMA,
    )
    return pa.concat_tables([table, marker_table])


def without_markers(metrics: pa.Table) -> pa.Table:
    """The metric rows without the marker rows and their column, which only a merge uses.

    An appended table holds the column only once a merge adds it: a column of 1.4 million
    nulls cost a 200,000-run backfill's load about 0.04 s.
    """
    markers = metrics.column(METRICS_MARKER)
    if markers.null_count < len(markers):
        metrics = metrics.filter(pc.is_null(markers))
    return metrics.drop_columns([METRICS_MARKER])


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
        if type(value) in NUMBER_TYPES:
            self.values.append(float(value))  # a JSON number always fits a double
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
        # Integers past 2**53 round to the nearest double, as a SQL cast would.
        rows.add_numbers(run_array, name, array.cast(pa.float64(), safe=False))
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
        range(len(column)), map(not_, map(NUMBER_TYPES.__contains__, map(type, column)))
    )
    for index in others:
        value = numbers[index]
        numbers[index] = None
        if _is_object(value):
            objects.append(value)
            object_runs.append(runs[index])
        else:
            rows.add_leaf(runs[index], name, value)
    try:
        array = pa.array(numbers, pa.float64())
    except pa.ArrowInvalid:  # an integer past 2**53: rounded, as above
        array = pa.array([None if n is None else float(n) for n in numbers], pa.float64())
    if array.null_count < len(array):
        held = array.is_valid()
        rows.add_numbers(run_array.filter(held), name, array.filter(held))
    if objects:
        _flatten_level(rows, objects, object_runs, name + ".")


_OBJECT_OR_NULL = frozenset({dict, type(None)})


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
