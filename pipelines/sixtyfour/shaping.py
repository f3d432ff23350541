"""API JSON objects to the Arrow tables the pipeline loads (one function per table).

Rows reach dlt as Arrow tables built here rather than nested dicts for dlt's JSON
normaliser: on this data that path is several times slower, and the columns are known.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat
from operator import itemgetter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.sixtyfour import settings
from pipelines.sixtyfour.columns import (
    add_extra_columns,
    as_text,
    float_column,
    integer_column,
    text_array,
    timestamp_column,
    with_keys,
)
from pipelines.sixtyfour.errors import ApiResponseError
from pipelines.sixtyfour.timestamps import UTC_MICROS, as_utc, micros_each, read_each

log = logging.getLogger("sixtyfour_sync.shaping")

_KNOWN_RUN_FIELDS = frozenset(
    settings.RUN_TIMESTAMP_FIELDS
    + settings.RUN_TEXT_FIELDS
    + settings.RUN_INTEGER_FIELDS
    + settings.RUN_NESTED_FIELDS
)


# The known scalar fields with the types the API documents (timestamps still as text).
_RUN_STRUCT = pa.struct(
    [pa.field(name, pa.string()) for name in settings.RUN_TEXT_FIELDS]
    + [pa.field(name, pa.string()) for name in settings.RUN_TIMESTAMP_FIELDS]
    + [pa.field(name, pa.int64()) for name in settings.RUN_INTEGER_FIELDS]
)
# What a required field may not be.
_MISSING = (None, "")


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
            timestamp_column(columns, name, typed.field(name), where)
    else:
        for name in settings.RUN_TEXT_FIELDS:
            columns[name] = text_array([run.get(name) for run in runs])
        for name in settings.RUN_TIMESTAMP_FIELDS:
            timestamp_column(columns, name, [run.get(name) for run in runs], where)
        for name in settings.RUN_INTEGER_FIELDS:
            integer_column(columns, name, [run.get(name) for run in runs])
    add_extra_columns(columns, _extra_fields(runs), lambda name: [run.get(name) for run in runs])
    return with_keys(pa.table(columns), "job_id")


@dataclass(frozen=True)
class PageKeys:
    """What a sync reads of every run on a page before shaping it (each parsed once)."""

    job_ids: Sequence[str]
    workflow_ids: Sequence[str]
    updated: Sequence[int]  # updated_at in microseconds since the epoch
    statuses: Sequence[Any]
    oldest_queued: datetime | None  # how far back the page reaches


_NO_KEYS = PageKeys((), (), (), (), None)
_REQUIRED_GETTER = itemgetter(*settings.RUN_REQUIRED_FIELDS)


def page_keys(runs: Sequence[dict[str, Any]], where: str) -> PageKeys:
    """Check a page's runs and read the keys the change filter and the reach planner need.

    Plain sequences and Python, not Arrow: a page is small, Arrow's fixed cost per call is
    paid per page rather than per batch, and each call lets the threads fetching the next
    pages take the interpreter (see `read_each`).

    Raises:
        ApiResponseError: a run lacks a required field or has an unreadable cursor timestamp.
    """
    if not runs:
        return _NO_KEYS
    try:
        # One pass over the runs, in C: the required fields as columns.
        columns = zip(*map(_REQUIRED_GETTER, runs), strict=True)
        required = dict(zip(settings.RUN_REQUIRED_FIELDS, columns, strict=True))
    except KeyError:
        _check_required(runs, where)  # names the first run without a required field
        raise  # not reached: a missing key is a missing field
    if not all(map(all, required.values())):
        # None, "" (or another false value) somewhere: name the run, unless it is only
        # an odd value (a 0), which the checks below and the shaping deal with.
        _check_required(runs, where)
    for key in ("job_id", "workflow_id"):  # dictionary keys and request parameters
        if set(map(type, required[key])) != {str}:
            raise ApiResponseError(f"GET {where} answered a {key} that is not a string")
    updated, oldest_queued = _page_instants(required, where)
    return PageKeys(
        job_ids=required["job_id"],
        workflow_ids=required["workflow_id"],
        updated=updated,
        statuses=required["status"],
        oldest_queued=oldest_queued,
    )


def _page_instants(
    required: Mapping[str, Sequence[Any]], where: str
) -> tuple[list[int], datetime | None]:
    """A page's updated_at values in microseconds since the epoch, and its oldest queued_at."""
    updated_at = read_each(required["updated_at"])
    queued_at = read_each(required["queued_at"])
    if updated_at is not None and queued_at is not None:
        try:
            return micros_each(updated_at), min(map(as_utc, queued_at))
        except OverflowError:
            pass  # in UTC, before year 1 or after 9999: the thorough path decides, as before
    # A form only the thorough reader takes, or no date-time at all: it names the value.
    instants: dict[str, pa.Array] = {}
    for name in ("updated_at", "queued_at"):
        timestamp_column(instants, name, required[name], where)
    updated = instants["updated_at"].cast(pa.int64()).to_pylist()
    return updated, pc.min(instants["queued_at"]).as_py()


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

_KNOWN_BLOCK_FIELDS = frozenset(
    BLOCK_TEXT_FIELDS + BLOCK_INTEGER_FIELDS + BLOCK_FLOAT_FIELDS + BLOCK_TIMESTAMP_FIELDS
)


def blocks_table(job_blocks: Iterable[tuple[str, str, Any]]) -> pa.Table:
    """workflow_runs__blocks rows from (job_id, source, blocks) triples.

    `source` says where the blocks were read: `list` (a list payload) or `live_status`.
    Block metrics (row_count, dataframe_type, ...) are lifted to columns where the block has
    no value of that name. Blocks that are not a list are taken as one block; a block that is
    not an object, and block metrics that are not one, are kept as JSON text (`value`,
    `metrics`). A block's own field named like one of the three keys above is kept under an
    alias, as any field named like a column is.
    """
    keys: list[tuple[str, int, str]] = []
    rows: list[dict[str, Any]] = []
    for job_id, source, blocks in job_blocks:
        for index, block in enumerate(blocks if isinstance(blocks, list) else [blocks]):
            row = dict(block) if isinstance(block, dict) else {"value": block}
            metrics = row.pop("metrics", None)
            if isinstance(metrics, dict):
                for key, value in metrics.items():
                    if row.get(key) is None:
                        row[key] = value
            elif metrics is not None:
                row["metrics"] = metrics
            keys.append((job_id, index, source))
            rows.append(row)
    job_ids, indexes, sources = zip(*keys, strict=True) if keys else ((), (), ())
    columns: dict[str, pa.Array] = {
        "job_id": pa.array(job_ids, pa.string()),
        "block_index": pa.array(indexes, pa.int64()),
        "source": pa.array(sources, pa.string()),
    }
    for name in BLOCK_TEXT_FIELDS:
        columns[name] = text_array([r.get(name) for r in rows])
    for name in BLOCK_INTEGER_FIELDS:
        integer_column(columns, name, [r.get(name) for r in rows])
    for name in BLOCK_FLOAT_FIELDS:
        float_column(columns, name, [r.get(name) for r in rows])
    for name in BLOCK_TIMESTAMP_FIELDS:
        timestamp_column(columns, name, [r.get(name) for r in rows], "live_status")
    extra = {key for r in rows for key in r} - _KNOWN_BLOCK_FIELDS
    add_extra_columns(columns, extra, lambda name: [r.get(name) for r in rows])
    return with_keys(pa.table(columns), "job_id", "block_index")


def details_table(details: Sequence[tuple[str, dict[str, Any]]], fetched_at: Any) -> pa.Table:
    """workflow_run_details rows: that a run's live_status was read, and its summary fields."""
    live = [d for _, d in details]
    columns: dict[str, pa.Array] = {
        "job_id": pa.array([job_id for job_id, _ in details], pa.string()),
        "overall_status": text_array([d.get("overall_status") for d in live]),
    }
    for name in ("total_blocks", "completed_blocks"):
        integer_column(columns, name, [d.get(name) for d in live])
    float_column(
        columns, "overall_progress_percentage", [d.get("overall_progress_percentage") for d in live]
    )
    columns["fetched_at"] = pa.array([fetched_at] * len(details), UTC_MICROS)
    timestamp_column(columns, "last_updated", [d.get("last_updated") for d in live], "live")
    return with_keys(pa.table(columns), "job_id")


_WORKFLOW_TEXT_FIELDS = ("id", "user_uuid", "org_id", "name", "description", "status", "step")
_KNOWN_WORKFLOW_FIELDS = frozenset(
    _WORKFLOW_TEXT_FIELDS + settings.WORKFLOW_TIMESTAMP_FIELDS + ("workflow_definition",)
)


def workflows_table(workflows: Sequence[dict[str, Any]]) -> pa.Table:
    """workflows rows, one per workflow; one without an id has no row (nothing to merge on)."""
    without_id = [w for w in workflows if w.get("id") in _MISSING]
    if without_id:
        log.warning(
            "GET /workflows answered %d workflows without an id: not stored", len(without_id)
        )
        workflows = [w for w in workflows if w.get("id") not in _MISSING]
    workflows = _last_listing_per_id(workflows)
    columns: dict[str, pa.Array] = {}
    for name in _WORKFLOW_TEXT_FIELDS:
        columns[name] = text_array([w.get(name) for w in workflows])
    for name in settings.WORKFLOW_TIMESTAMP_FIELDS:
        timestamp_column(columns, name, [w.get(name) for w in workflows], "/workflows")
    columns["workflow_definition"] = text_array([w.get("workflow_definition") for w in workflows])
    extra = {k for w in workflows for k in w} - _KNOWN_WORKFLOW_FIELDS
    add_extra_columns(columns, extra, lambda name: [w.get(name) for w in workflows])
    return with_keys(pa.table(columns), "id")


def _last_listing_per_id(workflows: Sequence[dict[str, Any]]) -> Sequence[dict[str, Any]]:
    """One workflow per stored id (1 and "1" are one), its last listing."""
    # A load stages one version of a row (dlt is not asked to deduplicate): the merge key
    # must name one row.
    by_id: dict[str, dict[str, Any]] = {}
    for workflow in workflows:
        by_id[as_text(workflow["id"])] = workflow
    if len(by_id) < len(workflows):
        log.warning(
            "GET /workflows listed %d workflows again under an id listed before: the last "
            "listing of each id is stored",
            len(workflows) - len(by_id),
        )
        return list(by_id.values())
    return workflows


def _typed_fields(
    runs: Sequence[dict[str, Any]], fields: pa.StructType = _RUN_STRUCT
) -> pa.StructArray | None:
    """The known scalar fields of all runs, converted by Arrow at once.

    None when some value has another type than documented (a number sent as text, say):
    the caller then goes field by field and keeps such values as text.
    """
    # Arrow would cut a fraction in an integer field to an integer (1.5 to 1) without a word.
    for name in settings.RUN_INTEGER_FIELDS:
        if float in set(map(type, map(dict.get, runs, repeat(name)))) and not all(
            v.is_integer() for v in map(dict.get, runs, repeat(name)) if type(v) is float
        ):
            return None
    try:
        typed = pa.array(runs, type=fields)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):  # OverflowError: past 64 bits
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
        if all(run.get(field) not in _MISSING for run in runs):
            continue
        for run in runs:
            if run.get(field) in _MISSING:
                job = run.get("job_id") or "a run"
                raise ApiResponseError(
                    f"GET {where} answered {job} without its required field '{field}'"
                )
    if not all(type(run["job_id"]) is str for run in runs):
        raise ApiResponseError(f"GET {where} answered a job_id that is not a string")


def _extra_fields(runs: Sequence[dict[str, Any]]) -> set[str]:
    # One union over all keys runs in C; a test per run would cost more than the shaping.
    return set().union(*runs) - _KNOWN_RUN_FIELDS
