"""The Sixtyfour dlt source: workflow runs, their metrics and blocks, workflows, sync ledger.

Use it like any verified source::

    import dlt
    from pipelines.sixtyfour import sixtyfour

    pipeline = dlt.pipeline(
        "sixtyfour", destination=dlt.destinations.duckdb("runs.duckdb"), dataset_name="sixtyfour"
    )
    pipeline.run(sixtyfour())
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, MutableMapping, Sequence
from typing import Any

import dlt
from dlt.common.configuration.container import Container
from dlt.common.pipeline import TPipelineState, pipeline_state
from dlt.extract.resource import DltResource

from pipelines.sixtyfour import settings
from pipelines.sixtyfour.bounds import check_bounds
from pipelines.sixtyfour.changes import TrackedRun, hold_back
from pipelines.sixtyfour.client import SixtyfourClient
from pipelines.sixtyfour.extract import (
    METRICS_TABLE,
    RUNS_TABLE,
    SyncOptions,
    extract_tables,
    updated_at_by_job,
)
from pipelines.sixtyfour.ledger import LEDGER_TABLE, SyncReport
from pipelines.sixtyfour.metrics import METRICS_MARKER, without_markers
from pipelines.sixtyfour.prefetch import Extraction, TableStream
from pipelines.sixtyfour.reader import ProgressCallback

__all__ = [
    "Extraction",
    "SyncReport",
    "TrackedRun",
    "later_versions",
    "resources_state",
    "sixtyfour",
]

# The extraction stages each key once per load (one version per run, see extract.py), so
# dlt need not deduplicate the staged rows: that costs a window over all of them.
_MERGE: Any = {"disposition": "merge", "strategy": "delete-insert", "deduplicated": True}


# Without the runner (the source in someone else's pipeline), newer versions of a run go
# into the same load as the older one: dlt deduplicates it, keeping the newest updated_at.
_MERGE_DEDUPLICATING: Any = {"disposition": "merge", "strategy": "delete-insert"}
_NEWEST_FIRST: list[Any] = [{"name": "updated_at", "dedup_sort": "desc"}]


def _table_hints(append: bool, deduplicated: bool = True) -> dict[str, Any]:
    """Hints per table (the one resource writes all of them).

    Child tables are replaced per run: the merge key job_id deletes a run's old rows before
    the new ones land. A table the warehouse holds no row of is appended to instead: there
    is nothing to replace, and a merge would stage and copy every row once more.
    """
    disposition: Any = "append" if append else _MERGE if deduplicated else _MERGE_DEDUPLICATING
    # The marker that deletes a run's old metric rows means something to a merge only.
    marker: list[Any] = [{"name": METRICS_MARKER, "data_type": "bool", "hard_delete": True}]
    if append:
        marker = []
    # One key column by its name, several as a list: the hints dlt stores stay as they were.
    keys: dict[str, Any] = {
        table: key[0] if len(key) == 1 else list(key)
        for table, key in settings.PRIMARY_KEYS.items()
    }
    if deduplicated:
        # Child rows are replaced by their run's job_id alone. Declared a primary key too,
        # their key makes dlt delete where (job_id and metric) or job_id: a join DuckDB runs
        # three to four times slower, in far more memory. (dlt keeps a key a stored schema
        # has: the runner drops it there. Deduplicating loads need it: see LIBRARY_HINTS.)
        keys["workflow_runs__metrics"] = keys["workflow_runs__blocks"] = []
    return {
        "workflow_runs": dlt.mark.make_hints(
            table_name="workflow_runs",
            primary_key=keys["workflow_runs"],
            write_disposition=disposition,
            columns=[] if deduplicated else _NEWEST_FIRST,
        ),
        "workflows": dlt.mark.make_hints(
            table_name="workflows", primary_key=keys["workflows"], write_disposition=disposition
        ),
        "workflow_runs__metrics": dlt.mark.make_hints(
            table_name="workflow_runs__metrics",
            primary_key=keys["workflow_runs__metrics"],
            merge_key="job_id",
            write_disposition=disposition,
            columns=marker,
        ),
        "workflow_runs__blocks": dlt.mark.make_hints(
            table_name="workflow_runs__blocks",
            primary_key=keys["workflow_runs__blocks"],
            merge_key="job_id",
            write_disposition=disposition,
        ),
        "workflow_run_details": dlt.mark.make_hints(
            table_name="workflow_run_details",
            primary_key=keys["workflow_run_details"],
            write_disposition=disposition,
        ),
        LEDGER_TABLE: dlt.mark.make_hints(table_name=LEDGER_TABLE, write_disposition="append"),
    }


TABLE_HINTS = _table_hints(append=False)
APPEND_HINTS = _table_hints(append=True)
LIBRARY_HINTS = _table_hints(append=False, deduplicated=False)


@dlt.source(name="sixtyfour", max_table_nesting=0)
def sixtyfour(
    api_key: str = dlt.secrets.value,
    base_url: str = settings.DEFAULT_BASE_URL,
    lag_seconds: float = settings.DEFAULT_LAG_SECONDS,
    details: bool = True,
    max_detail_requests: int = settings.DEFAULT_MAX_DETAIL_REQUESTS,
    rate_limit_per_minute: float = settings.DEFAULT_RATE_LIMIT_PER_MINUTE,
    concurrency: int = settings.DEFAULT_CONCURRENCY,
    timeout_seconds: float = settings.DEFAULT_TIMEOUT_SECONDS,
    max_retries: int = settings.DEFAULT_MAX_RETRIES,
    max_retry_wait_seconds: float = settings.DEFAULT_MAX_RETRY_WAIT_SECONDS,
    workflows_refresh_hours: float = settings.DEFAULT_WORKFLOWS_REFRESH_HOURS,
    backfill: bool = False,
    tracked_runs: Sequence[TrackedRun] = (),
    detail_backlog: Sequence[str] = (),
    report: SyncReport | None = None,
    on_progress: ProgressCallback | None = None,
    extraction: Extraction | None = None,
) -> DltResource:
    """Sixtyfour workflow runs, read incrementally by updated_at and merged by job_id.

    Args:
        api_key: the organization's key, sent as `x-api-key`.
        base_url: the API's address (the emulator's for a demo or a test).
        lag_seconds: how far behind the cursor runs are read again, for late writes.
        details: read block detail (live_status) of finished runs.
        max_detail_requests: at most this many detail reads per sync; the rest wait.
        rate_limit_per_minute: requests per minute the client paces itself to; 0 lifts it.
        concurrency: list requests in flight at once when a sync narrows.
        backfill: read as deep as the API allows and merge all of it.
        tracked_runs: runs the warehouse holds as in flight (the runner reads them), so
            runs that ended after leaving the newest 500 are followed up by id.
        detail_backlog: finished runs without block detail yet, oldest first.
        report: filled in with what the sync did; it is also loaded as the ledger row.
        on_progress: called as partitions are read (for progress bars).
        extraction: lets the caller begin the extraction before dlt's extract step (the
            runner does, to append a no-change sync's ledger row without dlt's steps).
    """
    check_bounds(
        lag_seconds=lag_seconds,
        max_detail_requests=max_detail_requests,
        rate_limit_per_minute=rate_limit_per_minute,
        concurrency=concurrency,
        timeout_seconds=timeout_seconds,
        max_retries=max_retries,
        max_retry_wait_seconds=max_retry_wait_seconds,
        workflows_refresh_hours=workflows_refresh_hours,
    )
    options = SyncOptions(
        lag_seconds=lag_seconds,
        backfill=backfill,
        details=details,
        max_detail_requests=max_detail_requests,
        concurrency=concurrency,
        workflows_refresh_hours=workflows_refresh_hours,
    )
    sync_report = (
        report if report is not None else SyncReport(mode="backfill" if backfill else "run")
    )

    def make_client() -> SixtyfourClient:
        return SixtyfourClient(
            api_key,
            base_url,
            timeout_seconds=timeout_seconds,
            max_retries=max_retries,
            max_retry_wait_seconds=max_retry_wait_seconds,
            rate_limit_per_minute=rate_limit_per_minute or None,
            concurrency=concurrency,
        )

    # The runner loads the newer versions set aside in a second package; used on its own,
    # the source puts them into its one package and lets dlt deduplicate it.
    runner_loads_later_versions = extraction is not None
    run_extraction = extraction if extraction is not None else Extraction()

    def stream(client: SixtyfourClient, state: MutableMapping[str, Any]) -> TableStream:
        return extract_tables(
            client,
            state,
            options,
            tracked_runs,
            detail_backlog,
            sync_report,
            on_progress,
            second_load=run_extraction.second_load,
        )

    run_extraction.bind(make_client, stream)

    @dlt.resource(name="workflow_runs", write_disposition=_MERGE)
    def workflow_runs() -> Iterator[Any]:
        merge_hints = TABLE_HINTS if runner_loads_later_versions else LIBRARY_HINTS
        state = dlt.current.resource_state()
        cursor_before = state.get("cursor")
        for table_name, table in run_extraction.tables(state):
            hints = merge_hints
            if table_name in run_extraction.append_tables:
                hints = APPEND_HINTS
                table = without_markers(table) if table_name == METRICS_TABLE else table
            yield dlt.mark.with_hints(table, hints[table_name], create_table_variant=True)
        if not runner_loads_later_versions:
            for table_name, table in run_extraction.second_load:
                yield dlt.mark.with_hints(table, merge_hints[table_name], create_table_variant=True)
        elif run_extraction.second_load:
            run_extraction.state_after_second_load = {
                key: copy.deepcopy(state[key]) for key in ("cursor", "recent") if key in state
            }
            later = {
                job_id: updated_at
                for table_name, table in run_extraction.second_load
                if table_name == RUNS_TABLE
                for job_id, updated_at in updated_at_by_job(table).items()
            }
            hold_back(state, later, cursor_before)

    return workflow_runs


def resources_state(state: TPipelineState) -> dict[str, Any]:
    """This source's resource states (workflow_runs: cursor, lag window) in a pipeline state.

    Created where missing.
    """
    sources = state.setdefault("sources", {})
    resources: dict[str, Any] = sources.setdefault(settings.PIPELINE_NAME, {}).setdefault(
        "resources", {}
    )
    return resources


def later_versions(extraction: Extraction) -> DltResource:
    """The runs an extraction set aside for a load after its own (see `extract_tables`)."""

    @dlt.resource(name="later_versions", write_disposition=_MERGE)
    def set_aside() -> Iterator[Any]:
        for table_name, table in extraction.second_load:
            yield dlt.mark.with_hints(table, TABLE_HINTS[table_name], create_table_variant=True)
        # The sync's whole state goes with this package, the first one's held these runs
        # back: set within the extract step, it is saved with this package or not at all.
        state, writable = pipeline_state(Container())
        if writable and extraction.state_after_second_load:
            runs_state = resources_state(state).setdefault("workflow_runs", {})
            runs_state.update(extraction.state_after_second_load)

    return set_aside
