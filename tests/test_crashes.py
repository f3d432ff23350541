"""Crashes and concurrency: killed syncs converge, overlapping runs, a DuckDB file held open."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from pipelines.emulator import Fault
from pipelines.sixtyfour.timestamps import parse_instant
from tests.conftest import Harness, cli_env, run_cli
from tests.test_sync_core import assert_warehouse_matches_api

# Runs the real CLI with one function replaced by a SIGKILL of the process itself, so the
# sync dies at a known point exactly as `kill -9` would leave it.
KILLED_SYNC = """
import os, signal, sys

point = sys.argv[1]

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if point == "extract":
    # Small batches, so dlt has written some of them when the page after them kills it.
    import pipelines.sixtyfour.settings as settings
    import pipelines.sixtyfour.shaping as shaping
    settings.RUNS_PER_BATCH = 100
    real = shaping.page_keys
    calls = []
    def keys_then_die(runs, where):
        calls.append(1)
        if len(calls) == 6:
            die()
        return real(runs, where)
    shaping.page_keys = keys_then_die
elif point == "normalize":
    from dlt.pipeline.pipeline import Pipeline
    Pipeline.normalize = die
elif point == "load":
    from dlt.destinations.impl.duckdb.sql_client import DuckDbSqlClient
    real_query = DuckDbSqlClient.execute_query
    def query_then_die(self, query, *args, **kwargs):
        if "DELETE FROM" in str(query).upper() and "workflow_runs" in str(query):
            die()
        return real_query(self, query, *args, **kwargs)
    DuckDbSqlClient.execute_query = query_then_die
elif point == "copied":
    # Right after the runs file's INSERT committed, before dlt marked that job done: the
    # next run loads the file again.
    from dlt.destinations.impl.duckdb.duck import DuckDbCopyJob
    real_run = DuckDbCopyJob.run
    def run_then_die(self):
        real_run(self)
        if os.path.basename(self._file_path).startswith("workflow_runs."):
            die()
    DuckDbCopyJob.run = run_then_die
elif point == "views":
    import pipelines.runner as runner
    runner._apply_views = die
elif point == "repair":
    # A sync resuming an interrupted load, right after loading it, before removing the rows
    # it loaded twice.
    import pipelines.runner as runner
    runner.repair_reloaded_rows = die
elif point in ("second-load", "second-load-interrupted"):
    # Between the sync's own package and the one of newer versions it set aside.
    import pipelines.runner as runner
    import pipelines.sixtyfour.settings as settings
    settings.RUNS_PER_BATCH = 10  # the run's older version is yielded before its newer one
    def stop(extraction):
        if point == "second-load":
            die()
        raise KeyboardInterrupt  # a Ctrl-C at that moment
    runner.later_versions = stop

from pipelines.cli import main
sys.argv = ["sixtyfour-sync", "run", "--no-details"]
main()
"""


def killed_sync(harness: Harness, point: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", KILLED_SYNC, point],
        env=cli_env(harness),
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.returncode


@pytest.mark.parametrize("point", ["extract", "normalize", "load", "views"])
def test_sync_killed_at_any_step_converges_on_the_next_run(harness: Harness, point: str) -> None:
    assert run_cli(harness, "run", "--no-details").returncode == 0
    harness.world.advance(3600, new_runs=700)
    assert killed_sync(harness, point) == -9
    result = run_cli(harness, "run", "--no-details")
    assert result.returncode == 0, result.stderr  # the dead sync's lock is gone with it
    assert_warehouse_matches_api(harness)
    assert harness.duplicate_runs() == 0


@pytest.mark.parametrize(
    ("point", "exit_code"), [("second-load", -9), ("second-load-interrupted", 130)]
)
def test_a_sync_stopped_before_its_second_load_still_brings_the_newer_version(
    harness: Harness, point: str, exit_code: int
) -> None:
    assert run_cli(harness, "run", "--no-details").returncode == 0
    # More new runs than one page holds: the sync narrows to each workflow's own pages, and
    # a run it read on the newest page changes before its workflow's page is read.
    first_workflow = harness.world.workflows()[0]["id"]
    harness.world.advance(3600)
    for workflow in harness.world.workflows()[:2]:
        harness.world.add_runs(300, workflow_id=workflow["id"], status="completed")
    newest = json.loads(harness.world.runs_json(limit=500))
    changed = next(r["job_id"] for r in newest if r["workflow_id"] == first_workflow)

    def change_it(body: bytes) -> bytes:
        harness.world.advance(30)
        harness.world.set_extra_field("metrics", {"rows_out": 7}, [changed], touch=True)
        return harness.world.runs_json(None, first_workflow, 500)

    harness.server.faults.add(Fault(transform=change_it, query={"workflow_id": first_workflow}))
    assert killed_sync(harness, point) == exit_code
    for _ in range(2):
        result = run_cli(harness, "run", "--no-details")
        assert result.returncode == 0, result.stderr
    stored = harness.dicts(
        f"select updated_at from sixtyfour.workflow_runs where job_id = '{changed}'"
    )
    assert stored[0]["updated_at"] == parse_instant(harness.world.payload(changed)["updated_at"])
    metrics = harness.rows(
        f"select metric, value from sixtyfour.workflow_runs__metrics where job_id = '{changed}'"
    )
    assert metrics == [("rows_out", 7.0)]
    assert harness.duplicate_runs() == 0


def test_a_resumed_load_stopped_before_its_repair_is_repaired_by_the_next_sync(
    harness: Harness,
) -> None:
    assert run_cli(harness, "run", "--no-details").returncode == 0
    harness.world.advance(3600, new_runs=700)
    assert killed_sync(harness, "copied") == -9  # the runs file landed, not marked done
    assert killed_sync(harness, "repair") == -9  # loaded it again, stopped before the repair
    result = run_cli(harness, "run", "--no-details")
    assert result.returncode == 0, result.stderr
    assert harness.duplicate_runs() == 0
    assert_warehouse_matches_api(harness)


def test_a_second_sync_while_one_runs_exits_4_at_once(harness: Harness) -> None:
    harness.server.faults.add(Fault(delay=4, query={"status": "active"}))
    first = subprocess.Popen(
        [sys.executable, "-m", "pipelines", "run", "--no-details"],
        env=cli_env(harness),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)
        started = time.monotonic()
        second = run_cli(harness, "run", "--no-details")
        assert second.returncode == 4, second.stderr
        assert "another sync of this pipeline is running" in second.stderr
        assert time.monotonic() - started < 4
    finally:
        assert first.wait(timeout=60) == 0


def test_duckdb_file_held_open_by_a_reader_fails_clearly_then_the_next_run_completes(
    harness: Harness,
) -> None:
    assert run_cli(harness, "run", "--no-details").returncode == 0
    harness.world.advance(600, new_runs=20)
    reader = duckdb.connect(str(harness.duckdb_path), read_only=True)
    try:
        result = run_cli(harness, "run", "--no-details")
    finally:
        reader.close()
    assert result.returncode == 7, result.stderr
    assert "held open by another process" in result.stderr
    assert run_cli(harness, "run", "--no-details").returncode == 0
    assert_warehouse_matches_api(harness)


def fetched_but_not_loaded(harness: Harness) -> set[str]:
    """A sync that fetched new runs, then met a reader holding the file (exit 7): its changes
    wait in a pending package. Returns the new runs' job_ids."""
    new_runs = set(harness.world.advance(600, new_runs=15))
    harness.server.faults.add(Fault(delay=2.5, query={"status": "active"}))
    sync = subprocess.Popen(
        [sys.executable, "-m", "pipelines", "run", "--no-details"],
        env=cli_env(harness),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Once the slow page is asked for, the sync has checked the file and waits on the page.
    deadline = time.monotonic() + 30
    while len(harness.server.faults) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not harness.server.faults, "the sync never asked for the slow page"
    reader = duckdb.connect(str(harness.duckdb_path), read_only=True)
    try:
        _, stderr = sync.communicate(timeout=60)
    finally:
        reader.close()
    assert sync.returncode == 7, stderr
    return new_runs


def test_reader_arriving_mid_sync_loses_nothing_that_was_fetched(harness: Harness) -> None:
    assert run_cli(harness, "run", "--no-details").returncode == 0
    harness.world.advance(600, new_runs=20)
    new_runs = fetched_but_not_loaded(harness)
    # Nothing is served differently now, yet the next run loads what the failed one fetched.
    result = run_cli(harness, "run", "--no-details")
    assert result.returncode == 0, result.stderr
    loaded = {job for (job,) in harness.rows("select job_id from sixtyfour.workflow_runs")}
    assert new_runs <= loaded
    assert_warehouse_matches_api(harness)
    # The interrupted sync's package (its ledger row with it) was loaded, not thrown away.
    (syncs,) = harness.rows("select count(*) from sixtyfour.sync_runs")[0]
    assert syncs == 3


def test_a_fetched_load_aborted_with_dlts_command_is_read_again(harness: Harness) -> None:
    # The way out of a pending load the warehouse keeps refusing (README, Troubleshooting).
    assert run_cli(harness, "run", "--no-details").returncode == 0
    new_runs = fetched_but_not_loaded(harness)
    dlt_command = Path(sys.executable).with_name("dlt")
    aborted = subprocess.run(
        [str(dlt_command), "pipeline", "sixtyfour", "abort-packages", "--yes"],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(harness),
        cwd=harness.duckdb_path.parent,
    )
    assert aborted.returncode == 0, aborted.stdout + aborted.stderr
    result = run_cli(harness, "run", "--no-details")
    assert result.returncode == 0, result.stderr
    assert "interrupted" not in result.stderr  # nothing was pending any more
    loaded = {job for (job,) in harness.rows("select job_id from sixtyfour.workflow_runs")}
    assert new_runs <= loaded
    assert_warehouse_matches_api(harness)


def test_snapshot_file_is_published_for_bi_tools(harness: Harness) -> None:
    snapshot = harness.duckdb_path.with_name("bi.duckdb")
    result = run_cli(harness, "run", "--no-details", SIXTYFOUR_SYNC__SNAPSHOT_PATH=str(snapshot))
    assert result.returncode == 0, result.stderr
    with duckdb.connect(str(snapshot), read_only=True) as bi:
        (runs,) = bi.sql("select count(*) from sixtyfour.workflow_runs").fetchone() or (0,)
        # A BI tool holding the snapshot does not block the next sync.
        harness.world.advance(600, new_runs=5)
        again = run_cli(harness, "run", "--no-details", SIXTYFOUR_SYNC__SNAPSHOT_PATH=str(snapshot))
        assert again.returncode == 0, again.stderr
    assert runs == len(harness.world.runs()) - 5


@pytest.mark.parametrize("warehouse", ["empty", "loaded"])
def test_sync_killed_after_a_file_was_loaded_does_not_load_it_twice(
    harness: Harness, warehouse: str
) -> None:
    # Into an empty warehouse the rows are appended, else merged through staging: either
    # way the interrupted load's file is loaded again on the next run.
    if warehouse == "loaded":
        assert run_cli(harness, "run", "--no-details").returncode == 0
        harness.world.advance(3600, new_runs=700)
    assert killed_sync(harness, "copied") == -9
    result = run_cli(harness, "run", "--no-details")
    assert result.returncode == 0, result.stderr
    assert_warehouse_matches_api(harness)
    for table, key in (
        ("workflow_runs", "job_id"),
        ("workflow_runs__metrics", "job_id, metric"),
        ("workflow_runs__blocks", "job_id, block_index"),
    ):
        assert harness.repeated_keys(table, key) == 0, table


def test_a_load_another_warehouse_left_unfinished_is_neither_dropped_nor_loaded_here(
    harness: Harness, tmp_path: Path
) -> None:
    assert run_cli(harness, "run", "--no-details").returncode == 0
    harness.world.advance(600, new_runs=20)
    fetched_but_not_loaded(harness)
    first = harness.duckdb_path
    harness.duckdb_path = tmp_path / "another.duckdb"
    result = run_cli(harness, "run", "--no-details")
    assert result.returncode == 2, result.stderr
    assert "left unfinished" in result.stderr and result.stderr.count("\n") == 1
    assert not harness.duckdb_path.exists()
    harness.duckdb_path = first
    assert run_cli(harness, "run", "--no-details").returncode == 0
    assert_warehouse_matches_api(harness)
    (syncs,) = harness.rows("select count(*) from sixtyfour.sync_runs")[0]
    assert syncs == 3  # the unfinished package was loaded where it belonged
