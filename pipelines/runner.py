"""One sync end to end: lock, pending loads, warehouse read-back, run, views, snapshot."""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
from dlt.common.configuration.exceptions import (
    ConfigFieldMissingException,
    ConfigurationException,
    ConfigValueCannotBeCoercedException,
    InvalidNativeValue,
)
from dlt.common.destination.exceptions import UnknownDestinationModule
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials
from dlt.pipeline.exceptions import PipelineStepFailed
from dlt.pipeline.pipeline import Pipeline

from pipelines import state_owner, views, warehouse
from pipelines.config import (
    APPEND_WORKERS,
    DUCKDB_DISABLED_COMPRESSION,
    WarehouseSettings,
)
from pipelines.lock import PipelineLock
from pipelines.memory import lean_cycle_collection, release_freed_memory
from pipelines.output import redact
from pipelines.sixtyfour import (
    TABLE_HINTS,
    Extraction,
    later_versions,
    resources_state,
    settings,
    sixtyfour,
)
from pipelines.sixtyfour.errors import (
    ConfigError,
    DestinationBusyError,
    SyncError,
    WarehouseMemoryError,
    WarehouseUnreachableError,
)
from pipelines.sixtyfour.extract import BLOCKS_TABLE, METRICS_TABLE, RUNS_TABLE
from pipelines.sixtyfour.ledger import LEDGER_TABLE, SyncReport, utc_now
from pipelines.sixtyfour.reader import ProgressCallback

log = logging.getLogger("sixtyfour_sync.runner")

DATA_TABLES = (
    "workflows",
    "workflow_runs",
    "workflow_runs__metrics",
    "workflow_runs__blocks",
    "workflow_run_details",
    LEDGER_TABLE,
)


@dataclass
class SyncRequest:
    """What the user asked for."""

    backfill: bool = False
    full_refresh: bool = False
    details: bool = True
    on_progress: ProgressCallback | None = None
    # Source arguments given directly (the demo points the source at its emulator).
    source_args: dict[str, Any] = field(default_factory=dict)


def make_pipeline(warehouse_settings: WarehouseSettings) -> Pipeline:
    """The `sixtyfour` pipeline on the configured destination (state under DLT_DATA_DIR)."""
    destination: Any = warehouse_settings.destination
    if warehouse_settings.duckdb_path is not None:
        warehouse_settings.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
        credentials = DuckDbCredentials(str(warehouse_settings.duckdb_path))
        credentials.global_config = {
            # Bounded memory, and no ordering guarantee DuckDB would spend memory on: a merge
            # of a large backfill otherwise grows the process by gigabytes.
            "preserve_insertion_order": False,
            # Text is kept in dictionaries or as it is: a faster load, a slightly larger file.
            "disabled_compression_methods": DUCKDB_DISABLED_COMPRESSION,
        }
        if warehouse_settings.duckdb_memory_limit:
            credentials.global_config["memory_limit"] = warehouse_settings.duckdb_memory_limit
        if warehouse_settings.duckdb_threads:
            credentials.global_config["threads"] = warehouse_settings.duckdb_threads
        destination = dlt.destinations.duckdb(credentials)
    return dlt.pipeline(
        pipeline_name=settings.PIPELINE_NAME,
        destination=destination,
        dataset_name=warehouse_settings.dataset_name,
    )


def lock_for(pipeline: Pipeline) -> PipelineLock:
    return PipelineLock(Path(pipeline.pipelines_dir) / f"{pipeline.pipeline_name}.lock")


def run_sync(warehouse_settings: WarehouseSettings, request: SyncRequest) -> SyncReport:
    """Run one sync under the pipeline lock and return its report.

    Raises:
        SyncError: with the exit code of the failure; the ledger records it where it can.
    """
    destination = warehouse_settings.destination
    try:
        pipeline = make_pipeline(warehouse_settings)
    except (ConfigurationException, UnknownDestinationModule) as exc:
        raise _bad_setting(exc, destination) from None
    except OSError as exc:  # the DuckDB file's folder cannot be made
        raise ConfigError(
            f"the DuckDB file's folder cannot be made ({exc.strerror}: {exc.filename}): fix "
            "DESTINATION__DUCKDB__CREDENTIALS or the folder"
        ) from None
    report = SyncReport(mode="backfill" if request.backfill else "run")
    with lock_for(pipeline):
        # Before anything is recorded: a failed sync's ledger row would carry the state of
        # another warehouse into this one.
        try:
            owner = state_owner.warehouse_key(pipeline, warehouse_settings)
        except Exception as exc:  # dlt resolves a server's credentials here
            setting = _setting_failure(exc, destination)
            if setting is None:
                raise
            raise setting from None
        state_owner.set_aside_another_warehouses_state(
            pipeline, owner, Path(pipeline.working_dir) / REPAIR_OWED_MARKER
        )
        try:
            _finish_pending(pipeline, warehouse_settings)
            if (
                not request.full_refresh
                and not _resource_state(pipeline)
                and _may_hold_state(warehouse_settings)
            ):
                # No local state (a new DLT_DATA_DIR): take the cursor from the warehouse,
                # where dlt keeps it with every load, rather than read everything again.
                pipeline.sync_destination()
            state_owner.claim(pipeline, owner)
            with lean_cycle_collection():
                loaded_by_dlt = _sync(pipeline, warehouse_settings, request, report)
        except Exception as exc:
            # dlt meets a missing or bad destination setting only once it connects.
            failure: Exception = (
                _setting_failure(exc, destination) or connection_failure(exc, destination) or exc
            )
            if isinstance(failure, SyncError):
                report.error = redact(str(failure))
            else:
                report.error = redact(f"{type(failure).__name__}: {failure}")
            _record_failure(pipeline, report)
            if request.full_refresh:
                _restore_views(pipeline)
            if failure is not exc:
                raise failure from None
            raise
    # The data has landed: views and the snapshot are extras whose failure fails nothing.
    try:
        _apply_views(pipeline, tables_changed=loaded_by_dlt)
        _publish(warehouse_settings)
    except Exception as exc:
        log.warning("the sync loaded, but views or the snapshot failed: %s", redact(str(exc)))
    return report


def _sync(
    pipeline: Pipeline,
    warehouse_settings: WarehouseSettings,
    request: SyncRequest,
    report: SyncReport,
) -> bool:
    """The sync proper; True when dlt loaded it, False when only its ledger row was added."""
    refresh: Any = None
    tracked: list[Any] = []
    backlog: list[str] = []
    waiting = 0
    client = pipeline.sql_client()
    if request.full_refresh:
        # PostgreSQL refuses to drop a table a view reads: drop the views first.
        with opened(client, warehouse_settings):
            _drop_views(pipeline, client)
        refresh = "drop_sources"
    extraction = Extraction()
    # The warehouse is opened only to read and write, never while pages are fetched: a
    # DuckDB file stays free for readers most of a sync's time.
    details = request.details and bool(_configured("details", True))
    # Tables without rows are appended to (all of them when a full refresh drops them).
    extraction.append_tables = frozenset(DATA_TABLES)
    if not request.full_refresh and _may_hold_state(warehouse_settings):
        with opened(client, warehouse_settings):
            extraction.append_tables = warehouse.tables_without_rows(client, DATA_TABLES)
            tracked = warehouse.tracked_runs(client)
            if details:
                cap = request.source_args.get(
                    "max_detail_requests",
                    _configured("max_detail_requests", settings.DEFAULT_MAX_DETAIL_REQUESTS),
                )
                backlog, waiting = warehouse.detail_backlog(client, int(cap))
    if not request.full_refresh and RUNS_TABLE in extraction.append_tables:
        _forget_another_warehouses_cursor(pipeline)
    try:
        source = sixtyfour(
            backfill=request.backfill,
            details=details,
            tracked_runs=tracked,
            detail_backlog=backlog,
            report=report,
            on_progress=request.on_progress,
            extraction=extraction,
            **request.source_args,
        )
    except ConfigurationException as exc:
        raise _bad_setting(exc, warehouse_settings.destination) from None
    done = False
    if refresh is None and extraction.begin(_resource_state(pipeline)):
        # Nothing changed: the ledger row is all there is to load. Before the ledger
        # table exists, the row goes through dlt like any other load.
        with opened(client, warehouse_settings):
            done = _append_ledger_row(client, extraction.ledger)
        report.details_pending = max(0, waiting - report.detail_requests)
    if done:
        return False
    _drop_stored_child_primary_keys(pipeline)
    # The steps one by one, so the wait for a busy warehouse comes right before the load.
    try:
        pipeline.extract(source, refresh=refresh)
        release_freed_memory()
        # Normalized before the second package is extracted: that one merges into tables the
        # first may append to, and its extract step marks them merged in the schema they share.
        pipeline.normalize()
        if extraction.second_load:
            # Runs that changed while the sync read them: their newer versions replace the
            # older ones in a load of their own, right after the first.
            pipeline.extract(later_versions(extraction))
            pipeline.normalize()
        gained_rows = refresh is None and _gained_rows(client, warehouse_settings, extraction)
        # A first sync (a new warehouse, or one whose tables hold no row) and a full refresh
        # append to every table: DuckDB needs little memory for that, however many runs it
        # is. (The ledger is always appended to; a failed sync may have left a row in it.)
        appends_only = extraction.append_tables >= set(DATA_TABLES) - {LEDGER_TABLE}
        load_packages(pipeline, warehouse_settings, appends_only=appends_only, finished=report)
        if gained_rows:
            repair_reloaded_rows(pipeline, warehouse_settings)
    except PipelineStepFailed as exc:
        # Nothing of a failed extraction may load later: the pages before the failure would
        # land without the cursor that goes with them.
        if exc.step == "extract" and pipeline.has_pending_data:
            pipeline.abort_packages()
        raise _unwrap(exc, warehouse_settings) from exc
    report.details_pending = max(0, waiting - report.detail_requests)
    return True


def _gained_rows(
    client: warehouse.Client, warehouse_settings: WarehouseSettings, extraction: Extraction
) -> bool:
    """Whether a table found empty at the start, and so appended to, holds rows by now.

    Only another sync with its own pipeline state (another DLT_DATA_DIR, so another lock)
    can have loaded it meanwhile; the rows both appended are then kept once per key.
    """
    appended = extraction.append_tables - {LEDGER_TABLE}
    if not appended or not _may_hold_state(warehouse_settings):
        return False
    with opened(client, warehouse_settings):
        return bool(appended - warehouse.tables_without_rows(client, sorted(appended)))


def load_packages(
    pipeline: Pipeline,
    warehouse_settings: WarehouseSettings,
    appends_only: bool = False,
    finished: SyncReport | None = None,
) -> None:
    """dlt's load step, with the settings the destination wants.

    Args:
        appends_only: the sync's tables are all appended to: DuckDB loads them side by side
            (APPEND_WORKERS at a time) within a lower memory limit (`append_memory_limit`),
            and one at a time within the configured one if that was not enough. (Runs that
            changed while the sync read them merge in a package of their own, loaded the
            same way: a few runs, which the lower limit holds too.)
        finished: the sync whose ledger row the packages carry: once they have loaded, the
            row's finished_at (stamped when the extraction ended) is stamped again, on the
            connection held open around the load.
    """
    # Held open around the load: for DuckDB each job opens the file and the last to close it
    # checkpoints and closes it, so a 200,000-run backfill loads about 0.15 s faster, within
    # the same memory limit. Opening it first is also where the sync waits while another
    # process (a BI tool, a DuckDB shell) holds the file.
    with opened(pipeline.sql_client(), warehouse_settings) as client:
        if warehouse_settings.duckdb_path is None:
            # Other warehouses load their tables side by side, as dlt does by default.
            pipeline.load(workers=20)
        else:
            _load_into_duckdb(pipeline, warehouse_settings, appends_only)
        if finished is not None:
            _stamp_finished(client, finished)


def _load_into_duckdb(
    pipeline: Pipeline, warehouse_settings: WarehouseSettings, appends_only: bool
) -> None:
    # A sync that merges (any after the first) loads one table at a time: a merge's delete
    # needs memory in proportion to the runs it replaces, and side by side the tables would
    # share one limit.
    lean_limit = warehouse_settings.append_memory_limit() if appends_only else None
    if lean_limit is not None:
        try:
            with _duckdb_memory_limit(pipeline, lean_limit):
                pipeline.load(workers=APPEND_WORKERS)
            return
        except PipelineStepFailed as exc:
            if not any(_out_of_memory(cause) for cause in _causes(exc)):
                raise
        # What loaded stays loaded; the jobs left over run within the configured limit.
        log.info(
            "appending needed more than %s: loading the rest within %s",
            lean_limit,
            warehouse_settings.duckdb_memory_limit,
        )
    pipeline.load(workers=1)


@contextmanager
def _duckdb_memory_limit(pipeline: Pipeline, limit: str) -> Iterator[None]:
    """The load step meanwhile opens DuckDB within `limit`.

    It opens the file with the destination's credentials, which set the limit of the whole
    DuckDB instance each time it is first opened: the connection held open around the load
    does not keep its own.
    """
    credentials = pipeline.destination.config_params.get("credentials")
    # make_pipeline's own credentials, which always carry a global config.
    assert isinstance(credentials, DuckDbCredentials) and credentials.global_config is not None
    settings_before = dict(credentials.global_config)
    credentials.global_config["memory_limit"] = limit
    try:
        yield
    finally:
        credentials.global_config.clear()
        credentials.global_config.update(settings_before)


def _publish(warehouse_settings: WarehouseSettings) -> None:
    if warehouse_settings.snapshot_path and warehouse_settings.duckdb_path:
        publish_snapshot(warehouse_settings.duckdb_path, warehouse_settings.snapshot_path)


def _may_hold_state(warehouse_settings: WarehouseSettings) -> bool:
    """False when the warehouse is a DuckDB file that does not exist yet: nothing to read.

    No state to restore, no tables, no runs tracked: asking costs a first backfill
    connections and queries for nothing (and would create the file early).
    """
    return warehouse_settings.duckdb_path is None or warehouse_settings.duckdb_path.exists()


def _resource_state(pipeline: Pipeline) -> dict[str, Any]:
    """The sixtyfour source's workflow_runs resource state as last committed locally."""
    return dict(resources_state(pipeline.state).get("workflow_runs") or {})


def _forget_another_warehouses_cursor(pipeline: Pipeline) -> None:
    """Read as deep as a first sync when the warehouse holds no run but the state a cursor.

    Only loaded runs set a cursor, so the state belongs to another warehouse: the DuckDB
    file or the dataset was changed while the state folder stayed. Read on from that cursor,
    the sync would leave the older runs out, silently.
    """
    if not _resource_state(pipeline).get("cursor"):
        return
    log.warning(
        "the warehouse holds no runs, but the pipeline state has a cursor (of another "
        "warehouse?): reading as deep as the API allows, as a first sync does"
    )
    with pipeline.managed_state() as state:
        resources_state(state).pop("workflow_runs", None)


def _drop_stored_child_primary_keys(pipeline: Pipeline) -> None:
    """Drop the primary key that older versions stored on the child tables.

    Their rows are replaced by job_id (the merge key) alone. With (job_id, metric) stored as
    primary key beside it, dlt deletes where (job_id and metric) or job_id: a join DuckDB runs
    three to four times slower, which ran out of memory on a 200,000-run merge (within 32MB
    with one thread, 96MB with two). dlt keeps a stored key whatever the resource's hints say,
    so it goes here, from the schema the next load stores.
    """
    if not pipeline.default_schema_name:
        return  # no schema yet: the resource's hints make one without the key
    for table_name in (METRICS_TABLE, BLOCKS_TABLE):
        table = pipeline.default_schema.tables.get(table_name)
        for column in (table or {}).get("columns", {}).values():
            column.pop("primary_key", None)


def _append_ledger_row(client: warehouse.Client, ledger: pa.Table | None) -> bool:
    """Append a ledger row with one INSERT; False when the ledger table does not exist yet,
    or lacks a column (dlt adds it)."""
    if ledger is None or not set(ledger.column_names) <= warehouse.ledger_columns(client):
        return False
    row = ledger.to_pylist()[0]
    columns = ", ".join(row)
    marks = ", ".join(["%s"] * len(row))
    table = client.make_qualified_table_name(LEDGER_TABLE)
    client.execute_sql(f"insert into {table} ({columns}) values ({marks})", *row.values())
    return True


_SETTING_ERRORS = (ConfigurationException, UnknownDestinationModule)
# What a setting of each type must look like, in the words of the error line.
_KINDS = {float: "number", int: "whole number", bool: "true or false", str: "text"}


def _setting_failure(exc: BaseException, destination: str) -> ConfigError | None:
    """The configuration problem dlt found somewhere in a failure's causes, as one line."""
    setting = next((c for c in _causes(exc) if isinstance(c, _SETTING_ERRORS)), None)
    return None if setting is None else _bad_setting(setting, destination)


def _bad_setting(exc: Exception, destination: str) -> ConfigError:
    """A configuration problem dlt found, as one line naming the setting."""
    if isinstance(exc, ConfigFieldMissingException):
        if "api_key" in exc.fields:
            return ConfigError(
                "no API key: set SOURCES__SIXTYFOUR__API_KEY or api_key under "
                "[sources.sixtyfour] in .dlt/secrets.toml"
            )
        if "credentials" in exc.fields:
            return ConfigError(
                f"no credentials for destination {destination}: set "
                f"DESTINATION__{destination.upper()}__CREDENTIALS or credentials under "
                f"[destination.{destination}] in .dlt/secrets.toml (a password too, for "
                "a database server)"
            )
        return ConfigError(f"missing setting(s): {', '.join(exc.fields)}")
    if isinstance(exc, ConfigValueCannotBeCoercedException):
        kind = _KINDS.get(exc.hint, str(exc.hint)) if isinstance(exc.hint, type) else exc.hint
        return ConfigError(
            f"setting '{exc.field_name}' must be a {kind}: fix it in .dlt/config.toml or "
            "its environment variable"
        )
    if isinstance(exc, InvalidNativeValue):
        return ConfigError(
            f"the credentials of destination {destination} cannot be read (for a database "
            "server: a URL such as postgresql://user:password@host:5432/database): fix "
            f"DESTINATION__{destination.upper()}__CREDENTIALS or [destination.{destination}] "
            "in .dlt/secrets.toml"
        )
    if isinstance(exc, UnknownDestinationModule):
        return ConfigError(
            f"unknown destination {destination!r}: name a dlt destination, such as duckdb "
            "or postgres"
        )
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ConfigError(f"bad configuration: {redact(first)[:200]}")


# What database drivers say when a connection fails (PostgreSQL's libpq, for one): with
# the server's refusal of the credentials, or without reaching a server at all.
_REFUSED_CREDENTIALS = (
    "password authentication failed",
    "does not exist",  # the role or the database
    "no pg_hba.conf entry",
    "authentication failed",
    "access denied",
)
_NOT_REACHED = (
    "connection refused",
    "could not connect",
    "could not translate host name",
    "name or service not known",
    "no route to host",
    "timeout expired",
    "timed out",
)


def connection_failure(exc: BaseException, destination: str) -> SyncError | None:
    """A failure to connect to the warehouse's server, as one line saying what to check.

    Refused credentials are a setting to fix (exit 2); a server not reached may be down, or
    named wrongly (exit 8). None when the failure is something else (DuckDB has no server).
    """
    if destination == "duckdb":
        return None
    for cause in _causes(exc):
        if type(cause).__name__ != "OperationalError":
            continue
        said = str(cause).lower()
        # libpq: 'connection to server at "host", port N failed: FATAL:  role "x" does ...',
        # then a hint on a line of its own.
        first = (str(cause).strip().splitlines() or [""])[0]
        reason = " ".join(first.split(" failed: ", 1)[-1].removeprefix("FATAL:").split())[:200]
        setting = f"DESTINATION__{destination.upper()}__CREDENTIALS"
        if any(words in said for words in _REFUSED_CREDENTIALS):
            return ConfigError(
                f"the warehouse ({destination}) refused the connection: {redact(reason)}: "
                f"check {setting}"
            )
        if any(words in said for words in _NOT_REACHED):
            return WarehouseUnreachableError(
                f"the warehouse ({destination}) could not be reached: {redact(reason)}: check "
                f"that its server runs and that {setting} names its host and port"
            )
    return None


_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off"})


def _configured(name: str, default: Any) -> Any:
    """A [sources.sixtyfour] setting as the runner needs it before the source exists."""
    value: Any = dlt.config.get(f"sources.sixtyfour.{name}")
    if value is None:
        return default
    if isinstance(default, bool) and isinstance(value, str):
        word = value.strip().lower()
        if not word:
            return default  # empty: the default, as for every other setting
        if word in _TRUE_WORDS | _FALSE_WORDS:
            return word in _TRUE_WORDS
        raise ConfigError(
            f"setting 'sources.sixtyfour.{name}' must be true or false, got {value!r}"
        )
    try:
        return type(default)(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"setting 'sources.sixtyfour.{name}' must be a {type(default).__name__}, got {value!r}"
        ) from None


def _unwrap(exc: PipelineStepFailed, warehouse_settings: WarehouseSettings) -> Exception:
    """The sync's own error inside dlt's wrapper; lock conflicts and DuckDB's memory limit
    as errors of their own."""
    for cause in _causes(exc):
        if isinstance(cause, SyncError):
            return cause
        if _lock_conflict(cause):
            return DestinationBusyError(
                f"the warehouse was locked by another process during step '{exc.step}'; "
                "what was fetched is kept and the next sync loads it first"
            )
        if warehouse_settings.duckdb_path is not None and _out_of_memory(cause):
            limit = warehouse_settings.duckdb_memory_limit or "DuckDB's default"
            kept = "; what was fetched is kept and the next sync loads it first"
            return WarehouseMemoryError(
                f"DuckDB ran out of memory within its limit ({limit}) during step "
                f"'{exc.step}': raise sixtyfour_sync.duckdb_memory_limit "
                f"(SIXTYFOUR_SYNC__DUCKDB_MEMORY_LIMIT){kept if exc.has_pending_data else ''}"
            )
    return exc


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and those it was raised from or while handling, outermost first.

    A chain can loop (an exception re-raised while handling one it caused): each is given
    once.
    """
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        yield cause
        cause = cause.__cause__ or cause.__context__


REPAIR_OWED_MARKER = "repair-owed"


def _finish_pending(pipeline: Pipeline, warehouse_settings: WarehouseSettings) -> None:
    """Load what an interrupted sync left behind before anything else.

    A package holds its data together with the state (cursor) it leads to, so loading it
    completes the earlier sync exactly; dropping it would lose fetched changes.
    """
    # Left beside the state until the rows loaded twice are removed: a sync stopped before
    # that (killed, or the warehouse busy) leaves the repair to the next one.
    repair_owed = Path(pipeline.working_dir) / REPAIR_OWED_MARKER
    if pipeline.has_pending_data:
        log.warning("an earlier sync was interrupted: loading what it had fetched first")
        repair_owed.touch()
        try:
            pipeline.normalize()
            load_packages(pipeline, warehouse_settings)
        except PipelineStepFailed as exc:
            raise _unwrap(exc, warehouse_settings) from exc
    if repair_owed.exists():
        repair_reloaded_rows(pipeline, warehouse_settings)
        repair_owed.unlink(missing_ok=True)


def repair_reloaded_rows(pipeline: Pipeline, warehouse_settings: WarehouseSettings) -> None:
    """After resuming an interrupted load, remove the rows it may have loaded twice."""
    client = pipeline.sql_client()
    try:
        with opened(client, warehouse_settings):
            for table in warehouse.TABLE_KEYS:
                repeated = warehouse.keep_one_row_per_key(client, table)
                if repeated:
                    log.warning(
                        "%s: %d keys loaded twice by the interrupted sync, kept once",
                        table,
                        repeated,
                    )
    except SyncError:
        raise
    except Exception as exc:  # a destination without DISTINCT ON: say so, fail nothing
        log.warning(
            "could not check the interrupted load for rows loaded twice: %s", redact(str(exc))
        )


def _record_failure(pipeline: Pipeline, report: SyncReport) -> None:
    """Append the failed sync's ledger row, when the warehouse can take it now."""
    if pipeline.has_pending_data:
        return  # the pending package must load first; the next sync will do that
    ledger = dlt.resource(
        report.ledger_table(), name=LEDGER_TABLE, write_disposition="append"
    ).apply_hints(columns=TABLE_HINTS[LEDGER_TABLE].get("columns"))
    try:
        pipeline.run(ledger)
    except Exception as exc:  # the warehouse itself may be the failure
        log.debug("could not record the failed sync in the ledger: %s", type(exc).__name__)
        if pipeline.has_pending_data:
            pipeline.abort_packages()


def _apply_views(pipeline: Pipeline, tables_changed: bool) -> None:
    """Create the views whose tables exist, only when the views or the tables changed.

    The marker beside the pipeline state holds a digest of the view files and one of the
    tables; a sync that changed no table compares the first alone and asks the warehouse
    nothing.
    """
    digest = hashlib.sha256()
    for view in views.load_views():
        digest.update(view.name.encode() + view.select.encode())
    marker = Path(pipeline.working_dir) / "views.sha256"
    known = marker.read_text().split() if marker.exists() else []
    if not tables_changed and known[:1] == [digest.hexdigest()]:
        return
    with pipeline.sql_client() as client:
        sql = views.existing_tables_sql(client.dataset_name)
        existing = {row[0] for row in client.execute_sql(sql) or []}
        tables = hashlib.sha256(",".join(sorted(existing)).encode()).hexdigest()
        if known == [digest.hexdigest(), tables]:
            return
        if known[:1] != [digest.hexdigest()]:
            # The view files changed (or were never applied from here): PostgreSQL refuses to
            # replace a view whose columns changed, so the old ones go first.
            views.drop_views(client.execute_sql, client.dataset_name)
        views.apply_views(client.execute_sql, client.dataset_name, existing)
    marker.write_text(f"{digest.hexdigest()} {tables}")


def _stamp_finished(client: warehouse.Client, report: SyncReport) -> None:
    """Move the ledger row's finished_at to now: it was stamped when the extraction ended, the
    row being part of the load, whose time a sync's duration leaves out otherwise."""
    finished = utc_now()
    table = client.make_qualified_table_name(LEDGER_TABLE)
    try:
        client.execute_sql(
            f"update {table} set finished_at = %s where sync_id = %s", finished, report.sync_id
        )
        report.finished_at = finished
    except Exception as exc:  # the row and the data are in; only the duration is short
        log.warning(
            "the sync loaded, but its ledger row's finished_at was not updated: %s",
            redact(str(exc)),
        )


def _restore_views(pipeline: Pipeline) -> None:
    """After a failed full refresh, bring back the views it dropped over the kept tables."""
    try:
        _apply_views(pipeline, tables_changed=True)
    except Exception as exc:
        log.debug("views not restored: %s", exc)


def _drop_views(pipeline: Pipeline, client: warehouse.Client) -> None:
    try:
        views.drop_views(client.execute_sql, client.dataset_name)
    except Exception as exc:  # nothing to drop before the first sync
        log.debug("no views dropped: %s", exc)
    (Path(pipeline.working_dir) / "views.sha256").unlink(missing_ok=True)


@contextmanager
def opened(
    client: warehouse.Client, warehouse_settings: WarehouseSettings
) -> Iterator[warehouse.Client]:
    """The client with its connection open, waiting while another process holds the file.

    Gives up after `busy_timeout_seconds` with DestinationBusyError (exit 7).
    """
    _while_locked(warehouse_settings, client.open_connection)
    try:
        yield client
    finally:
        client.close_connection()


def _while_locked(warehouse_settings: WarehouseSettings, attempt: Callable[[], object]) -> None:
    """Call `attempt` until no other process holds the file, or the busy timeout passes."""
    deadline = time.monotonic() + warehouse_settings.busy_timeout_seconds
    while True:
        try:
            attempt()
            return
        except Exception as exc:
            if not _lock_conflict(exc):
                raise
            if time.monotonic() >= deadline:
                raise _busy(warehouse_settings) from None
            time.sleep(0.5)


def _lock_conflict(exc: BaseException) -> bool:
    return "could not set lock" in str(exc).lower()


# How DuckDB words running out of its limit: an OutOfMemoryException mostly, but a commit
# that cannot pin a block fails as a TransactionException with the same words.
_OUT_OF_MEMORY_WORDS = ("out of memory", "failed to pin block", "could not allocate block")


def _out_of_memory(exc: BaseException) -> bool:
    import duckdb  # loaded already by the time DuckDB fails

    if isinstance(exc, duckdb.OutOfMemoryException):
        return True
    if not isinstance(exc, duckdb.Error):
        return False
    text = str(exc).lower()
    return any(words in text for words in _OUT_OF_MEMORY_WORDS)


def _busy(warehouse_settings: WarehouseSettings) -> DestinationBusyError:
    return DestinationBusyError(
        f"the DuckDB file {warehouse_settings.duckdb_path} is held open by another process: "
        "close it (or let BI tools read the snapshot file) and run the sync again"
    )


def publish_snapshot(database: Path, snapshot: Path) -> None:
    """Copy the warehouse to a read-only snapshot, replacing the old one atomically.

    BI tools that read the snapshot never hold a lock on the file the sync writes.
    """
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    partial = snapshot.with_name(snapshot.name + ".partial")
    shutil.copyfile(database, partial)
    partial.replace(snapshot)
