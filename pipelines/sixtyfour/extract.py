"""One sync's extraction: pages to Arrow tables, in-flight follow-up, block detail, ledger."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, MutableMapping, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import compress, repeat
from operator import is_not
from typing import Any

import pyarrow as pa

from pipelines.sixtyfour import metrics, settings, shaping
from pipelines.sixtyfour.changes import ChangeFilter, TrackedRun
from pipelines.sixtyfour.client import ForbiddenError, SixtyfourClient
from pipelines.sixtyfour.columns import VARIANT_SUFFIX
from pipelines.sixtyfour.errors import ApiResponseError, ApiUnavailableError
from pipelines.sixtyfour.ledger import LEDGER_TABLE, SyncReport, utc_now
from pipelines.sixtyfour.prefetch import TableStream
from pipelines.sixtyfour.reader import ChangeReader, ProgressCallback, RunsPage
from pipelines.sixtyfour.timestamps import BadTimestamp, from_micros, parse_instant, to_micros

log = logging.getLogger("sixtyfour_sync.extract")

RUNS_TABLE = "workflow_runs"
METRICS_TABLE = "workflow_runs__metrics"
BLOCKS_TABLE = "workflow_runs__blocks"
DETAILS_TABLE = "workflow_run_details"
WORKFLOWS_TABLE = "workflows"

# What a run's or live_status' `blocks` holds when there are none.
_NO_BLOCKS: tuple[Any, ...] = (None, [], {}, "")

# live_status says "cancelled"/"canceled" and the list uses the same words as the run's status.
_LIVE_STATUS_TO_RUN = {"canceled": "cancelled"}


@dataclass
class SyncOptions:
    """The settings one extraction runs with."""

    lag_seconds: float = settings.DEFAULT_LAG_SECONDS
    backfill: bool = False
    details: bool = True
    max_detail_requests: int = settings.DEFAULT_MAX_DETAIL_REQUESTS
    concurrency: int = settings.DEFAULT_CONCURRENCY
    workflows_refresh_hours: float = settings.DEFAULT_WORKFLOWS_REFRESH_HOURS


def extract_tables(
    client: SixtyfourClient,
    state: MutableMapping[str, Any],
    options: SyncOptions,
    tracked_runs: Sequence[TrackedRun],
    detail_backlog: Sequence[str],
    report: SyncReport,
    on_progress: ProgressCallback | None = None,
    second_load: list[tuple[str, pa.Table]] | None = None,
) -> TableStream:
    """Yield (table name, Arrow table) pairs for everything one sync loads, ledger row last.

    The resource state (the cursor above all) is changed while reading, but dlt commits it
    only with a load that succeeds: an extraction that fails midway leaves it as it was.

    Each load stages at most one version of a run (dlt is told so and skips deduplicating).
    A run that changed after an older version of it was already yielded, which only a sync
    that narrows can meet, goes to `second_load`: the caller loads those tables after this
    load.
    """
    try:
        yield from joined_tables(
            _extract(
                client,
                state,
                options,
                tracked_runs,
                detail_backlog,
                report,
                on_progress,
                second_load if second_load is not None else [],
            ),
            settings.RUNS_PER_ITEM,
        )
    finally:
        # Also when it fails: the failed sync's ledger row counts what was really sent.
        report.api_requests = client.stats.api_requests
        report.http_retries = client.stats.http_retries
        report.rate_limited = client.stats.rate_limited
    report.finished_at = utc_now()
    yield LEDGER_TABLE, report.ledger_table()


def _extract(
    client: SixtyfourClient,
    state: MutableMapping[str, Any],
    options: SyncOptions,
    tracked_runs: Sequence[TrackedRun],
    detail_backlog: Sequence[str],
    report: SyncReport,
    on_progress: ProgressCallback | None,
    second_load: list[tuple[str, pa.Table]],
) -> TableStream:
    tracked = {run.job_id: run for run in tracked_runs}
    changes = ChangeFilter.from_state(
        state, options.lag_seconds, tracked, options.backfill, read_from=to_micros(utc_now())
    )
    report.cursor_before = None if changes.cursor is None else from_micros(changes.cursor)
    watermark = changes.watermark
    # job_id -> run: a run read twice (it changed between two pages) keeps its newer version
    # only, so its metrics and blocks are never a mix of both.
    batch: dict[str, dict[str, Any]] = {}
    # job_ids of the batches already yielded, as long as a later page may show them again.
    yielded: set[str] = set()
    later: dict[str, dict[str, Any]] = {}
    with_blocks: set[str] = set()  # runs whose list payload carried blocks

    # Workflows read to the end, whose runs were forgotten; only in the first pass, where a
    # backfill reads most of them: the follow-up reads few pages and may show runs again.
    forgotten: set[str] = set()
    following_up = False

    def forget(workflow: str) -> None:
        if not following_up:
            yielded.difference_update(changes.forget_workflow(workflow))
            forgotten.add(workflow)

    api_clock_taken = False
    reader = ChangeReader(
        client,
        watermark=None if options.backfill or watermark is None else from_micros(watermark),
        failed_filter_supported=state.get("failed_filter_supported"),
        need_workflows=_workflows_due(state, options.workflows_refresh_hours),
        known_workflows=set(state.get("known_workflows") or ()),
        concurrency=options.concurrency,
        on_progress=on_progress,
        on_workflow_read=forget,
    )
    for page in reader.pages():
        if not api_clock_taken:
            changes.use_api_clock(client.first_answer_at)
            api_clock_taken = True
        # No page of a forgotten workflow comes in this pass: their set is not asked.
        _collect(_changed_runs(page, changes), batch, yielded, later, frozenset())
        if len(batch) >= settings.RUNS_PER_BATCH:
            yield from _runs_tables(list(batch.values()), with_blocks)
            # Runs whose workflow was read to the end are not shown again.
            yielded.update(batch.keys() & changes.seen.keys())
            batch = {}
    if reader.workflows is not None:
        yield WORKFLOWS_TABLE, shaping.workflows_table(reader.workflows)
        listed = {w["id"] for w in reader.workflows if isinstance(w.get("id"), str)}
        # Workflows the list left out though this sync saw their runs count as known too:
        # reading the list again at every sync would not show them (it is read when due).
        state["known_workflows"] = sorted(listed | reader.workflows_shown)
        state["workflows_read_at"] = utc_now().isoformat()

    # Runs stored in flight that the API answered 404 for in the last syncs, and how often:
    # kept for runs still tracked and not seen again; after a few syncs they are not asked.
    unknown = {
        job_id: syncs
        for job_id, syncs in (state.get("unknown_to_api") or {}).items()
        if job_id in tracked
    }

    # Runs stored as in flight that no page showed have ended (or fell off a full active
    # page): look for them in narrower lists, then read the rest by id, the only way to
    # reach a run queued long ago.
    def unseen_runs() -> dict[str, Any]:
        return {
            j: t.row.get("workflow_id")
            for j, t in tracked.items()
            if j not in changes.seen and unknown.get(j, 0) < settings.UNKNOWN_RUN_TRIES
        }

    following_up = True
    if unseen_runs():
        for page in reader.follow_up_pages(unseen_runs):
            _collect(_changed_runs(page, changes), batch, yielded, later, forgotten)
    yield from _runs_tables(list(batch.values()), with_blocks)
    yielded.update(batch)
    second_load.extend(_runs_tables(list(later.values()), with_blocks))
    unseen = list(unseen_runs())
    # A run whose list payload carried blocks in this sync gets its detail in the next one,
    # so no load stages two sets of blocks for one run.
    backlog = (
        [j for j in detail_backlog if j not in tracked and j not in with_blocks]
        if options.details
        else []
    )
    backlog = backlog[: max(0, options.max_detail_requests)]
    yield from _follow_up(
        client, unseen, backlog, tracked, changes, report, options.concurrency, state
    )
    _note_unknown_runs(state, unknown, unseen, report.unknown_runs, changes.seen)

    report.runs_seen = changes.runs_seen
    report.runs_loaded = changes.loaded
    report.partitions = reader.progress.partitions_done
    report.gaps = list(reader.gaps)
    cursor = changes.cursor_after()
    report.cursor_after = None if cursor is None else from_micros(cursor)
    changes.save(state)
    if reader.failed_filter_supported is not None:
        state["failed_filter_supported"] = reader.failed_filter_supported


def _note_unknown_runs(
    state: MutableMapping[str, Any],
    unknown: dict[str, int],
    asked: Sequence[str],
    unknown_now: Sequence[str],
    seen: Mapping[str, int],
) -> None:
    """Count the syncs in a row in which runs stored in flight were unknown to the API (404).

    A run deleted while in flight (its workflow, say) would otherwise cost its workflow's page
    and a live_status read at every sync, for good. It stays as last stored, and a page that
    shows it again updates it as any run stored in flight.
    """
    for job_id in ((seen.keys() | set(asked)) - set(unknown_now)) & unknown.keys():
        del unknown[job_id]  # shown on a page again, or read by id after all
    for job_id in unknown_now:
        unknown[job_id] = unknown.get(job_id, 0) + 1
        if unknown[job_id] == settings.UNKNOWN_RUN_TRIES:
            log.warning(
                "run %s, stored in flight, was unknown to the API in %d syncs: no longer "
                "asked for; it stays as last stored",
                job_id,
                settings.UNKNOWN_RUN_TRIES,
            )
    if unknown:
        state["unknown_to_api"] = unknown
    else:
        state.pop("unknown_to_api", None)


def joined_tables(tables: TableStream, runs_per_item: int) -> TableStream:
    """The same tables, those of consecutive batches joined per table name.

    All held tables are handed on once those of workflow_runs hold `runs_per_item` rows, and
    at the end. dlt pays a fixed cost per item (it computes and checks the table's schema
    again); joining Arrow tables copies no data. Tables whose columns of one name have
    different types are handed on one by one.
    """
    held: dict[str, list[pa.Table]] = {}
    runs = 0
    for name, table in tables:
        held.setdefault(name, []).append(table)
        if name == RUNS_TABLE:
            runs += table.num_rows
        if runs >= runs_per_item:
            yield from _joined(held)
            runs = 0
    yield from _joined(held)


def _joined(held: dict[str, list[pa.Table]]) -> TableStream:
    for name, tables in held.items():
        try:
            yield name, pa.concat_tables(tables, promote_options="default")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            yield from ((name, table) for table in tables)
    held.clear()


def _changed_runs(
    page: RunsPage, changes: ChangeFilter
) -> tuple[Sequence[dict[str, Any]], Sequence[str]]:
    """The page's new or changed runs, and their job_ids."""
    keys = page.keys
    in_flight_page = page.filter.status in ("active", "running")
    mask = changes.select(
        keys.job_ids,
        keys.updated,
        keys.statuses,
        in_flight_page=in_flight_page,
        workflow=page.filter.workflow_id,
    )
    if all(mask):
        return page.runs, keys.job_ids  # a backfill's usual page: no per-run Python at all
    return list(compress(page.runs, mask)), list(compress(keys.job_ids, mask))


def _collect(
    changed: tuple[Sequence[dict[str, Any]], Sequence[str]],
    batch: dict[str, dict[str, Any]],
    yielded: set[str],
    later: dict[str, dict[str, Any]],
    forgotten: AbstractSet[str],
) -> None:
    """Add changed runs to the batch, or to `later` when a batch already yielded the run.

    A run of a workflow in `forgotten` (read to the end, its runs forgotten: only follow-up
    pages show it again) goes to `later` too unless the batch holds it: an earlier batch may
    have handed it on, and looking new again, it must not be staged twice in one package.
    """
    runs, job_ids = changed
    if yielded.isdisjoint(job_ids) and not forgotten:
        batch.update(zip(job_ids, runs, strict=True))  # a newer version replaces an older
        return
    for job_id, run in zip(job_ids, runs, strict=True):
        if job_id in yielded or (job_id not in batch and run["workflow_id"] in forgotten):
            later[job_id] = run  # the change filter passes only newer versions
        else:
            batch[job_id] = run


def _runs_tables(runs: list[dict[str, Any]], with_blocks: set[str]) -> TableStream:
    """The tables of a batch of runs: the runs, their metrics and the blocks they carry.

    Shaping thousands of runs at once costs far less per run than page by page: Arrow's
    fixed cost per call is paid once per column and batch. The job_ids of runs whose
    blocks were yielded are added to `with_blocks`.
    """
    if not runs:
        return
    table = shaping.runs_table(runs, "/workflows/runs")
    yield RUNS_TABLE, table
    yield METRICS_TABLE, metrics.metrics_table(runs, table["job_id"].combine_chunks())
    blocks = list(map(dict.get, runs, repeat("blocks")))
    # Most runs carry none (null): only the others are looked at one by one.
    listed_blocks = [
        (runs[index]["job_id"], "list", blocks[index])
        for index in compress(range(len(runs)), map(is_not, blocks, repeat(None)))
        if blocks[index] not in _NO_BLOCKS
    ]
    if listed_blocks:
        with_blocks.update(job_id for job_id, _, _ in listed_blocks)
        yield BLOCKS_TABLE, shaping.blocks_table(listed_blocks)


def _follow_up(
    client: SixtyfourClient,
    unseen: list[str],
    backlog: list[str],
    tracked: dict[str, TrackedRun],
    changes: ChangeFilter,
    report: SyncReport,
    concurrency: int,
    state: MutableMapping[str, Any],
) -> TableStream:
    if not unseen and not backlog:
        return
    job_ids = unseen + backlog
    reader = _LiveStatusReader(client)
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        answers = list(zip(job_ids, pool.map(reader.read, job_ids), strict=True))
    asked = [not (isinstance(live, _Unread) and not live.asked) for _, live in answers]
    report.detail_requests = sum(asked[len(unseen) :])
    # job_id -> syncs whose read of a finished run's detail failed, to give up after a few
    # (kept for the runs of this backlog only, and in the state only while there are any)
    in_backlog = set(backlog)
    tries = {j: n for j, n in (state.get("detail_failures") or {}).items() if j in in_backlog}
    ended: list[dict[str, Any]] = []
    started: list[dict[str, Any]] = []
    detailed: list[tuple[str, dict[str, Any]]] = []
    for job_id, live in answers:
        run = tracked.get(job_id)
        if isinstance(live, _Unread):
            report.unread_runs.append((job_id, live.reason))
            if run is not None or not live.asked:
                continue  # asked again next sync; a run in flight stays tracked
            tries[job_id] = tries.get(job_id, 0) + 1
            if live.for_good or tries[job_id] >= settings.DETAIL_READ_TRIES:
                # The key may never see it, or its answer stays broken: no detail to be
                # had, it leaves the backlog rather than head it at every sync.
                tries.pop(job_id)
                detailed.append((job_id, {}))
            continue
        tries.pop(job_id, None)
        if live is None:
            if run is not None:
                report.unknown_runs.append(job_id)
            else:
                # No detail to be had: recorded as read, so it leaves the backlog for good.
                detailed.append((job_id, {}))
            continue
        if run is not None:
            status = _run_status(live)
            if status in settings.IN_FLIGHT_STATUSES:
                # Still in flight, only missing from a full active page; one stored as
                # queued that started is stored as running, with its start.
                if (run.status, status) == ("queued", "running"):
                    started.append(_run_as_live(run, live))
                continue
            if not status:
                # Whether it ended is not said: it stays tracked, and the next sync asks again.
                log.info("%s: live_status gives no overall_status; asked again next sync", job_id)
                continue
            ended.append(_run_as_live(run, live))
        detailed.append((job_id, live))
    if tries:
        state["detail_failures"] = tries
    else:
        state.pop("detail_failures", None)
    if ended or started:
        table = shaping.runs_table(ended + started, "live_status")
        for job_id, updated_at in updated_at_by_job(table).items():
            changes.note_loaded(job_id, updated_at)
        report.runs_resolved_by_id = len(ended)
        yield RUNS_TABLE, table
    if detailed:
        blocks = [
            (j, "live_status", live["blocks"])
            for j, live in detailed
            if live.get("blocks") not in _NO_BLOCKS
        ]
        if blocks:
            yield BLOCKS_TABLE, shaping.blocks_table(blocks)
        yield DETAILS_TABLE, shaping.details_table(detailed, utc_now())


@dataclass(frozen=True)
class _Unread:
    """A run's live_status that could not be read, and why."""

    reason: str
    for_good: bool = False  # the API will not answer it for this key (403)
    asked: bool = True  # False: not asked in this sync, as the API kept failing


class _LiveStatusReader:
    """Reads live_status run by run: one run that cannot be read does not fail the sync.

    Once the API kept failing on two runs (retries spent), the rest are not asked in this
    sync: they would only wait out their retries too. One run alone may just have a broken
    answer.
    """

    def __init__(self, client: SixtyfourClient) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._failed_runs = 0
        self._api_down = threading.Event()

    def read(self, job_id: str) -> dict[str, Any] | _Unread | None:
        if self._api_down.is_set():
            return _Unread("not asked: the API kept failing on other runs", asked=False)
        try:
            return self._client.live_status(job_id)
        except ForbiddenError as exc:
            return _Unread(str(exc), for_good=True)
        except ApiUnavailableError as exc:
            with self._lock:
                self._failed_runs += 1
                if self._failed_runs >= 2:
                    self._api_down.set()
            return _Unread(str(exc))
        except ApiResponseError as exc:  # an answer the sync cannot read: perhaps next time
            return _Unread(str(exc))


def updated_at_by_job(runs: pa.Table) -> dict[str, int]:
    """job_id -> updated_at in microseconds, of a workflow_runs table."""
    job_ids = runs.column("job_id").to_pylist()
    updated = runs.column("updated_at").cast(pa.int64()).to_pylist()
    return dict(zip(job_ids, updated, strict=True))


def _run_status(live: dict[str, Any]) -> str:
    status = str(live.get("overall_status") or "")
    return _LIVE_STATUS_TO_RUN.get(status, status)


def _run_as_live(run: TrackedRun, live: dict[str, Any]) -> dict[str, Any]:
    """The stored row of a run that ended or started, brought up to date from its live status.

    Metrics are not in live_status: the run's stored metric rows are kept as they are.
    """
    payload = {k: _as_payload(v) for k, v in run.row.items() if not k.startswith("_dlt")}
    # A value stored as text beside its column goes back to its field, where the shaping
    # keeps it beside the column again (a variant column in the payload would be taken for
    # a field of its own and shadow that).
    for name in [k for k in payload if k.endswith(VARIANT_SUFFIX)]:
        text = payload.pop(name)
        field = name.removesuffix(VARIANT_SUFFIX)
        if text is not None and payload.get(field) is None:
            payload[field] = text
    payload["status"] = _run_status(live)
    for field in ("started_at", "completed_at"):
        if live.get(field):
            payload[field] = live[field]
    started = _instant(payload.get("started_at"))
    completed = _instant(payload.get("completed_at"))
    if started and completed and type(payload.get("duration_ms")) is not int:
        # The run's length is known now: it replaces what the run in flight had (null, text).
        payload["duration_ms"] = (completed - started) // timedelta(milliseconds=1)
    # The run changed after it was stored: updated_at must not go backwards.
    candidates = [
        t
        for t in (_instant(live.get("last_updated")), completed, from_micros(run.updated_at))
        if t is not None
    ]
    payload["updated_at"] = max(candidates).isoformat()
    return payload


def _as_payload(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _instant(value: Any) -> datetime | None:
    try:
        return None if value in (None, "") else parse_instant(value)
    except BadTimestamp:
        return None


def _workflows_due(state: MutableMapping[str, Any], refresh_hours: float) -> bool:
    read_at = state.get("workflows_read_at")
    if not read_at:
        return True
    return utc_now() - datetime.fromisoformat(read_at) > timedelta(hours=refresh_hours)
