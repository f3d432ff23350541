"""What a sync does to the process's memory management: allocators, collector, bodies."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dlt.pipeline.pipeline import Pipeline

from pipelines import config, runner
from pipelines.config import WarehouseSettings, megabytes
from pipelines.emulator import Fault
from pipelines.memory import lean_cycle_collection
from pipelines.sixtyfour.client import SixtyfourClient
from pipelines.sixtyfour.errors import SyncError
from tests.conftest import API_KEY, Harness

HOST_THRESHOLDS = (900, 11, 12)  # what the host process had set: not Python's defaults


@pytest.fixture
def host_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(*HOST_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def watch_thresholds_during_sync(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """The collector thresholds at the point a sync releases the extraction's memory."""
    seen: list[tuple[int, ...]] = []
    release = runner.release_freed_memory

    def watched() -> None:
        seen.append(gc.get_threshold())
        release()

    monkeypatch.setattr(runner, "release_freed_memory", watched)
    return seen


@pytest.mark.usefixtures("host_thresholds")
def test_a_sync_collects_cycles_rarely_and_restores_the_hosts_settings(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    during = watch_thresholds_during_sync(monkeypatch)
    assert harness.sync(details=False).status == "ok"
    assert len(during) == 1
    young, _, old = during[0]
    assert young >= 10_000 and old >= 1_000_000
    assert gc.get_threshold() == HOST_THRESHOLDS


@pytest.mark.usefixtures("host_thresholds")
def test_a_failed_sync_also_restores_the_hosts_collector_settings(harness: Harness) -> None:
    harness.server.faults.add(Fault(status=401))
    with pytest.raises(SyncError):
        harness.sync(details=False)
    assert gc.get_threshold() == HOST_THRESHOLDS


@pytest.mark.usefixtures("host_thresholds")
def test_overlapping_syncs_leave_the_hosts_settings_to_the_last_one_ending() -> None:
    first, second = lean_cycle_collection(), lean_cycle_collection()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first ends while the second still runs
    assert gc.get_threshold() != HOST_THRESHOLDS
    second.__exit__(None, None, None)
    assert gc.get_threshold() == HOST_THRESHOLDS


def test_a_page_body_is_not_left_on_the_response(harness: Harness) -> None:
    """httpx keeps each response in a reference cycle: the page must not ride along."""
    gc.collect()
    gc.disable()  # as good as the rare collection of a sync: the cycles stay
    try:
        with SixtyfourClient(API_KEY, harness.server.base_url, rate_limit_per_minute=0) as client:
            runs = client.list_runs()
        assert len(runs) > 100
        responses = [o for o in gc.get_objects() if isinstance(o, httpx.Response)]
        assert responses, "the cycle this guards against is gone: the test needs a new look"
        kept = [r for r in responses if len(getattr(r, "_content", b"")) > 1000]
        assert kept == []
    finally:
        gc.enable()


def test_an_error_body_still_reaches_the_message(harness: Harness) -> None:
    harness.server.faults.add(Fault(status=402))  # its body names the reason
    client = SixtyfourClient(API_KEY, harness.server.base_url, rate_limit_per_minute=0)
    with client, pytest.raises(SyncError, match="Insufficient credits"):
        client.list_runs()


# The command line started as cron starts it, asked for its help; then Arrow's allocator.
ARROW_POOL_AFTER_COMMAND = """
import sys
sys.argv = ["sixtyfour-sync", "--help"]
from pipelines.entry import main
try:
    main()
except SystemExit:
    pass
import pyarrow
print(pyarrow.default_memory_pool().backend_name)
"""


@pytest.mark.parametrize(("setting", "expected"), [(None, "system"), ("mimalloc", "mimalloc")])
def test_the_command_line_runs_arrow_on_the_c_librarys_allocator_unless_told_otherwise(
    setting: str | None, expected: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if setting:
        env["ARROW_DEFAULT_MEMORY_POOL"] = setting
    result = subprocess.run(
        [sys.executable, "-c", ARROW_POOL_AFTER_COMMAND],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == expected


def test_duckdb_memory_sizes_are_read_in_its_units() -> None:
    assert megabytes("64MB") == 64.0
    assert megabytes("1 GiB") == pytest.approx(1073.741824)
    assert megabytes("500kb") == 0.5
    assert megabytes("1.5GB") == 1500.0
    assert megabytes("80%") is None and megabytes("lots") is None and megabytes("100") is None


@pytest.mark.parametrize(
    ("limit", "threads", "expected"),
    [
        ("64MB", 1, config.APPEND_MEMORY_LIMIT),
        ("1GB", 1, config.APPEND_MEMORY_LIMIT),
        ("24MB", 1, None),  # not above the lower limit: the configured one stands
        ("20MB", 1, None),
        ("16MB", 1, None),
        ("8MB", 1, None),
        ("64MB", 2, None),  # each thread needs its share
        ("64MB", 0, None),
        ("", 1, None),  # DuckDB's own default, as the user asked
        ("a lot", 1, None),  # unreadable: left to DuckDB as configured
    ],
)
def test_only_a_single_threaded_duckdb_with_a_larger_limit_appends_within_the_lower_one(
    tmp_path: Path, limit: str, threads: int, expected: str | None
) -> None:
    warehouse = WarehouseSettings(
        duckdb_path=tmp_path / "w.duckdb",
        duckdb_memory_limit=limit,
        duckdb_threads=threads,
    )
    assert warehouse.append_memory_limit() == expected
    assert WarehouseSettings(destination="postgres").append_memory_limit() is None


def record_load_limits(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The DuckDB memory limit each of dlt's load steps opens the warehouse with."""
    limits: list[object] = []
    load = Pipeline.load

    def recording(self: Pipeline, *args: Any, **kwargs: Any) -> Any:
        credentials = self.destination.config_params["credentials"]
        limits.append(credentials.global_config.get("memory_limit"))
        return load(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "load", recording)
    return limits


def test_a_first_backfill_appends_within_the_lower_limit_and_later_merges_do_not(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits = record_load_limits(monkeypatch)
    harness.sync(backfill=True, details=False)
    assert limits == [config.APPEND_MEMORY_LIMIT]
    harness.world.advance(600, new_runs=30)
    harness.sync(details=False)
    harness.sync(backfill=True, details=False)  # merges every run again
    assert limits == [config.APPEND_MEMORY_LIMIT, "64MB", "64MB"]
    harness.sync(full_refresh=True, backfill=True, details=False)  # dropped: appended again
    assert limits[-1] == config.APPEND_MEMORY_LIMIT
    assert harness.duplicate_runs() == 0
    (runs,) = harness.rows("select count(*) from sixtyfour.workflow_runs")[0]
    assert runs == len(harness.world.runs())


def test_a_first_backfill_after_a_failed_sync_still_appends_within_the_lower_limit(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits = record_load_limits(monkeypatch)
    with pytest.raises(SyncError):
        harness.sync(api_key="not-the-key", backfill=True, details=False)
    (failed,) = harness.rows("select count(*) from sixtyfour.sync_runs")[0]
    assert failed == 1  # its ledger row: the data tables hold nothing yet
    harness.sync(backfill=True, details=False)
    assert limits[-1] == config.APPEND_MEMORY_LIMIT


def test_appended_tables_load_side_by_side(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dlt.destinations.impl.duckdb.duck import DuckDbCopyJob

    # The runs' job waits for the metric rows' job to start, and the other way round: loaded
    # one at a time, the first would wait in vain and fail the load.
    both_running = threading.Barrier(2, timeout=20)
    run = DuckDbCopyJob.run

    def meeting(self: DuckDbCopyJob) -> None:
        if self.load_table_name in ("workflow_runs", "workflow_runs__metrics"):
            both_running.wait()
        run(self)

    monkeypatch.setattr(DuckDbCopyJob, "run", meeting)
    monkeypatch.setenv("LOAD__RAISE_ON_MAX_RETRIES", "1")
    report = harness.sync(backfill=True, details=False)
    assert not both_running.broken
    (runs,) = harness.rows("select count(*) from sixtyfour.workflow_runs")[0]
    assert runs == report.runs_loaded == len(harness.world.runs())
    assert harness.repeated_keys("workflow_runs__metrics", "job_id, metric") == 0


def test_merged_tables_load_one_at_a_time(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dlt.destinations.impl.duckdb.duck import DuckDbCopyJob

    harness.sync(details=False)
    harness.world.advance(600, new_runs=30)
    running: list[str] = []
    together: list[list[str]] = []
    run = DuckDbCopyJob.run

    def watched(self: DuckDbCopyJob) -> None:
        running.append(self.load_table_name)
        together.append(list(running))
        time.sleep(0.05)  # long enough for a job started meanwhile to be seen
        try:
            run(self)
        finally:
            running.remove(self.load_table_name)

    monkeypatch.setattr(DuckDbCopyJob, "run", watched)
    harness.sync(details=False, backfill=True)  # merges every run again
    assert {"workflow_runs", "workflow_runs__metrics"} <= {tables[-1] for tables in together}
    assert all(len(tables) == 1 for tables in together)
    assert harness.duplicate_runs() == 0


def fail_copy_jobs(
    monkeypatch: pytest.MonkeyPatch,
    limits: list[object],
    failure: Exception,
    table: str = "",
    tries: int | None = 1,
    failures: int | None = None,
) -> dict[str, list[object]]:
    """Make DuckDB's copy jobs (of `table`, or all) fail while the lower limit is set (only
    the first `failures` times, if given), `tries` times before dlt's load step gives up
    (None: as configured); returns the limit each table's job loaded within."""
    from dlt.destinations.impl.duckdb.duck import DuckDbCopyJob

    loaded: dict[str, list[object]] = {}
    failed: list[str] = []
    run = DuckDbCopyJob.run

    def failing(self: DuckDbCopyJob) -> None:
        name = self.load_table_name
        lower_limit = limits[-1] == config.APPEND_MEMORY_LIMIT
        if lower_limit and table in ("", name) and (failures is None or len(failed) < failures):
            failed.append(name)
            raise failure
        run(self)
        loaded.setdefault(name, []).append(limits[-1])

    monkeypatch.setattr(DuckDbCopyJob, "run", failing)
    if tries is not None:
        monkeypatch.setenv("LOAD__RAISE_ON_MAX_RETRIES", str(tries))
    return loaded


def test_a_table_that_needs_more_memory_to_append_loads_within_the_configured_limit(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import duckdb

    limits = record_load_limits(monkeypatch)
    memory = duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block")
    # Tried twice: the load step goes on with the other tables between the two tries.
    loaded = fail_copy_jobs(monkeypatch, limits, memory, "workflow_runs__metrics", tries=2)
    caplog.set_level("INFO", logger="sixtyfour_sync.runner")
    report = harness.sync(backfill=True, details=False)
    assert limits == [config.APPEND_MEMORY_LIMIT, "64MB"]
    # What loaded within the lower limit stays; the jobs left load within the configured one.
    assert loaded.pop("workflow_runs__metrics") == ["64MB"]
    assert {"workflow_runs", "workflows"} <= set(loaded)
    assert all(len(limits_of_table) == 1 for limits_of_table in loaded.values())
    assert [config.APPEND_MEMORY_LIMIT] in loaded.values()
    assert (
        f"appending needed more than {config.APPEND_MEMORY_LIMIT}: loading the rest within 64MB"
        in caplog.text
    )
    (runs,) = harness.rows("select count(*) from sixtyfour.workflow_runs")[0]
    assert runs == report.runs_loaded == len(harness.world.runs())
    assert harness.duplicate_runs() == 0
    assert harness.repeated_keys("workflow_runs__metrics", "job_id, metric") == 0
    (metric_rows,) = harness.rows("select count(*) from sixtyfour.workflow_runs__metrics")[0]
    assert metric_rows > runs
    (loads,) = harness.rows("select count(*) from sixtyfour._dlt_loads where status = 0")[0]
    assert loads == 1


def test_an_append_that_ran_out_of_memory_once_loads_when_tried_again_within_the_lower_limit(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    import duckdb

    limits = record_load_limits(monkeypatch)
    memory = duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block")
    # As configured: how often dlt tries a job before the load step gives up.
    loaded = fail_copy_jobs(
        monkeypatch, limits, memory, "workflow_runs__metrics", tries=None, failures=1
    )
    report = harness.sync(backfill=True, details=False)
    # dlt tried the job again within the lower limit: no load within the configured one.
    assert limits == [config.APPEND_MEMORY_LIMIT]
    assert loaded["workflow_runs__metrics"] == [config.APPEND_MEMORY_LIMIT]
    (runs,) = harness.rows("select count(*) from sixtyfour.workflow_runs")[0]
    assert runs == report.runs_loaded == len(harness.world.runs())
    assert harness.repeated_keys("workflow_runs__metrics", "job_id, metric") == 0
    (metric_rows,) = harness.rows("select count(*) from sixtyfour.workflow_runs__metrics")[0]
    assert metric_rows > runs


def test_an_append_that_fails_for_another_reason_is_not_tried_again(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    import duckdb

    limits = record_load_limits(monkeypatch)
    fail_copy_jobs(monkeypatch, limits, duckdb.IOException("IO Error: No space left on device"))
    with pytest.raises(Exception, match="No space left on device"):
        harness.sync(backfill=True, details=False)
    assert limits == [config.APPEND_MEMORY_LIMIT]


def test_an_append_that_cannot_even_create_its_tables_loads_within_the_configured_limit(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Within 1MB DuckDB cannot create a table: the load must go on within the configured 64MB.
    monkeypatch.setattr(config, "APPEND_MEMORY_LIMIT", "1MB")
    monkeypatch.setenv("LOAD__RAISE_ON_MAX_RETRIES", "1")
    limits = record_load_limits(monkeypatch)
    report = harness.sync(backfill=True, details=False)
    assert limits == ["1MB", "64MB"]
    (runs,) = harness.rows("select count(*) from sixtyfour.workflow_runs")[0]
    assert runs == report.runs_loaded == len(harness.world.runs())
    assert harness.duplicate_runs() == 0
    assert harness.repeated_keys("workflow_runs__metrics", "job_id, metric") == 0
