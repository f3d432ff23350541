"""Core sync: the first load is exact, later syncs bring changes once, nothing twice."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import pytest
from dlt.pipeline.pipeline import Pipeline

from pipelines.runner import REPAIR_OWED_MARKER, make_pipeline
from pipelines.sixtyfour import ledger
from pipelines.sixtyfour.errors import ConfigError
from pipelines.sixtyfour.metrics import METRICS_MARKER
from pipelines.sixtyfour.timestamps import parse_instant
from tests.conftest import Harness

RUN_COLUMNS = (
    "job_id", "workflow_id", "status", "workflow_name", "step", "user_id", "created_at",
    "updated_at", "queued_at", "started_at", "completed_at", "duration_ms", "status_reason",
    "error_message", "blocks_count",
)  # fmt: skip


def flatten_metrics(metrics: Any, prefix: str = "") -> dict[str, Any]:
    """The emulator's metrics flattened the way the warehouse should hold them."""
    flat: dict[str, Any] = {}
    if not isinstance(metrics, dict):
        return flat
    for key, value in metrics.items():
        if isinstance(value, dict) and value:
            flat.update(flatten_metrics(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def assert_rows_match_api(
    world_runs: list[dict[str, Any]],
    stored_runs: list[dict[str, Any]],
    metric_rows: list[tuple[Any, ...]],
) -> None:
    """Stored runs and (job_id, metric, value, value_text) rows are exactly the API's, once."""
    expected = {run["job_id"]: run for run in world_runs}
    assert len(stored_runs) == len({row["job_id"] for row in stored_runs}), "duplicate job_id"
    stored = {row["job_id"]: row for row in stored_runs}
    assert stored.keys() == expected.keys()
    for job_id, run in expected.items():
        row = stored[job_id]
        for column in RUN_COLUMNS:
            want, got = run[column], row[column]
            if isinstance(want, datetime):
                # Aware on both sides (whatever the session's zone): compared as instants.
                assert got is not None and got.utcoffset() is not None, (job_id, column)
            assert got == want, (job_id, column, got, want)
    assert len(metric_rows) == len({(job_id, metric) for job_id, metric, *_ in metric_rows})
    by_run: dict[str, dict[str, Any]] = {}
    for job_id, metric, value, value_text in metric_rows:
        by_run.setdefault(job_id, {})[metric] = value if value_text is None else value_text
    for job_id, run in expected.items():
        flat = flatten_metrics(run["metrics"])
        got = by_run.get(job_id, {})
        assert got.keys() == flat.keys(), job_id
        for metric, value in flat.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                assert math.isclose(got[metric], value), (job_id, metric)
            else:
                assert json.loads(got[metric]) == value, (job_id, metric)


def assert_warehouse_matches_api(harness: Harness) -> None:
    assert_rows_match_api(
        harness.world.runs(),
        harness.dicts("select * from sixtyfour.workflow_runs"),
        harness.rows(
            "select job_id, metric, value, value_text from sixtyfour.workflow_runs__metrics"
        ),
    )


def test_first_sync_loads_exactly_the_api_runs(harness: Harness) -> None:
    report = harness.sync()
    assert report.status == "ok"
    assert report.runs_loaded == len(harness.world.runs())
    assert_warehouse_matches_api(harness)
    (count,) = harness.rows("select count(*) from sixtyfour.workflows")[0]
    assert count == len(harness.world.workflows())


def test_next_sync_brings_status_changes_and_new_runs_without_duplicates(
    harness: Harness,
) -> None:
    harness.sync()
    in_flight_before = set(harness.world.in_flight())
    assert in_flight_before, "the emulated history should have runs in flight"
    harness.world.advance(2 * 3600, new_runs=60)
    report = harness.sync()
    assert report.runs_loaded >= 60
    assert_warehouse_matches_api(harness)
    assert harness.duplicate_runs() == 0
    finished = in_flight_before - set(harness.world.in_flight())
    assert finished, "some runs in flight should have finished in two hours"
    statuses = dict(harness.rows("select job_id, status from sixtyfour.workflow_runs"))
    assert all(statuses[job] in ("completed", "failed", "cancelled") for job in finished)


def test_metric_rows_of_a_run_merged_again_are_replaced(harness: Harness) -> None:
    harness.sync()
    job_id = harness.world.in_flight()[0]
    harness.world.set_status(job_id, "running")
    harness.world.set_status(job_id, "completed")
    harness.sync()
    expected = set(flatten_metrics(harness.world.payload(job_id)["metrics"]))
    stored = {
        m
        for (m,) in harness.rows(
            f"select metric from sixtyfour.workflow_runs__metrics where job_id = '{job_id}'"
        )
    }
    assert stored == expected and stored


def test_a_run_merged_again_without_metrics_loses_its_metric_rows(harness: Harness) -> None:
    harness.sync(details=False)  # appended: the metric rows carry no marker column yet
    columns = harness.rows(
        "select column_name from information_schema.columns "
        "where table_name = 'workflow_runs__metrics'"
    )
    assert METRICS_MARKER not in {name for (name,) in columns}
    newest = json.loads(harness.world.runs_json(limit=500))
    job_id = next(r["job_id"] for r in newest if r["status"] == "completed" and r["metrics"])
    count = "select count(*) from sixtyfour.workflow_runs__metrics"
    (rows_before,) = harness.rows(count)[0]
    (rows_of_run,) = harness.rows(f"{count} where job_id = '{job_id}'")[0]
    assert rows_of_run > 0
    harness.world.advance(60)
    harness.world.set_extra_field("metrics", None, [job_id], touch=True)
    harness.sync(details=False)  # a merge: the run's marker row deletes its old rows
    assert harness.rows(f"{count} where job_id = '{job_id}'")[0][0] == 0
    assert harness.rows(count)[0][0] >= rows_before - rows_of_run
    assert harness.repeated_keys("workflow_runs__metrics", "job_id, metric") == 0


def test_sync_with_nothing_changed_loads_nothing(harness: Harness) -> None:
    harness.sync()
    before = harness.rows("select count(*) from sixtyfour.workflow_runs__metrics")
    harness.server.reset_stats()
    report = harness.sync(details=False)
    assert report.runs_loaded == 0
    assert harness.server.request_count <= 2
    assert harness.rows("select count(*) from sixtyfour.workflow_runs__metrics") == before
    ledger = harness.dicts("select * from sixtyfour.sync_runs order by started_at")
    assert len(ledger) == 2
    assert ledger[-1]["status"] == "ok" and ledger[-1]["runs_loaded"] == 0
    assert ledger[-1]["api_requests"] == harness.server.request_count
    assert ledger[-1]["cursor_after"] == ledger[0]["cursor_after"]


def test_a_syncs_ledger_row_finishes_after_its_load(harness: Harness) -> None:
    for _ in range(2):
        report = harness.sync(details=False)
        harness.world.advance(600, new_runs=20)
        (finished,) = harness.rows(
            f"select finished_at from sixtyfour.sync_runs where sync_id = '{report.sync_id}'"
        )[0]
        (loaded,) = harness.rows("select max(inserted_at) from sixtyfour._dlt_loads")[0]
        assert finished >= loaded  # the load's time is part of the sync's duration
        assert finished == report.finished_at


def test_a_ledger_without_a_newer_column_gains_it_in_a_sync_with_nothing_changed(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as older:
        # The ledger as a version before details_unread wrote it (table and dlt schema).
        before = [f for f in ledger.LEDGER_SCHEMA if f.name != "details_unread"]
        older.setattr(ledger, "LEDGER_SCHEMA", pa.schema(before))
        harness.sync(details=False)
    columns = "select column_name from information_schema.columns where table_name = 'sync_runs'"
    assert ("details_unread",) not in harness.rows(columns)
    harness.server.reset_stats()
    report = harness.sync(details=False)
    assert report.runs_loaded == 0 and harness.server.request_count <= 2
    rows = harness.dicts("select * from sixtyfour.sync_runs order by started_at")
    assert [row["details_unread"] for row in rows] == [None, 0]
    loads = "select count(*) from sixtyfour._dlt_loads"
    loads_before = harness.rows(loads)
    harness.sync(details=False)  # appended without dlt now that the column is there
    assert len(harness.rows("select * from sixtyfour.sync_runs")) == 3
    assert harness.rows(loads) == loads_before


def test_a_lost_state_folder_takes_the_cursor_from_the_warehouse(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked: list[str] = []
    look = Pipeline.sync_destination

    def counted(self: Pipeline, *args: Any, **kwargs: Any) -> None:
        looked.append(self.pipeline_name)
        look(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "sync_destination", counted)
    first = harness.sync(details=False)
    assert looked == []  # a DuckDB file that does not exist yet holds no state to look for
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "another-dlt"))
    harness.server.reset_stats()
    report = harness.sync(details=False)
    assert looked == ["sixtyfour"]
    assert report.cursor_before == first.cursor_after
    assert report.runs_loaded == 0 and harness.server.request_count <= 2


def test_a_new_warehouse_file_with_the_old_state_folder_gets_every_run(
    harness: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    harness.sync(details=False)
    harness.world.advance(600, new_runs=10)
    harness.duckdb_path = tmp_path / "elsewhere" / "new-warehouse.duckdb"
    report = harness.sync(details=False)
    assert report.cursor_before is None  # read as deep as a first sync
    assert report.runs_loaded == len(harness.world.runs())
    assert_warehouse_matches_api(harness)
    assert any("is another warehouse's" in r.getMessage() for r in caplog.records)
    # Its cursor is this warehouse's now: the next sync reads on from it.
    assert harness.sync(details=False).runs_loaded == 0


def test_going_back_to_a_warehouse_after_another_shared_the_state_folder_loses_nothing(
    harness: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = harness.duckdb_path
    harness.sync(details=False)
    harness.world.advance(600, new_runs=10)  # changes the first warehouse has not seen yet
    harness.duckdb_path = tmp_path / "elsewhere" / "second.duckdb"
    harness.sync(details=False)
    harness.world.advance(600, new_runs=10)
    harness.duckdb_path = first
    report = harness.sync(details=False)
    # Read on from the first warehouse's own cursor, not the second's.
    assert report.runs_loaded >= 20
    assert_warehouse_matches_api(harness)
    assert any("another warehouse's" in r.getMessage() for r in caplog.records)
    assert harness.sync(details=False).runs_loaded == 0  # and it is this warehouse's again


def test_a_full_refresh_keeps_the_state_named_after_its_warehouse(
    harness: Harness, tmp_path: Path
) -> None:
    first = harness.duckdb_path
    harness.sync(details=False)
    harness.world.advance(600, new_runs=10)
    harness.duckdb_path = tmp_path / "elsewhere" / "second.duckdb"
    harness.sync(details=False)
    harness.sync(details=False, full_refresh=True)  # drops the source's state, cursor and all
    harness.world.advance(600, new_runs=10)
    harness.duckdb_path = first
    assert harness.sync(details=False).runs_loaded >= 20
    assert_warehouse_matches_api(harness)


def test_a_repair_owed_to_another_warehouse_is_neither_dropped_nor_made_here(
    harness: Harness, tmp_path: Path
) -> None:
    harness.sync(details=False)
    pipeline = make_pipeline(harness.target)
    owed = Path(pipeline.working_dir) / REPAIR_OWED_MARKER
    owed.touch()  # as a resumed load leaves it when the repair after it met a busy file
    harness.duckdb_path = tmp_path / "elsewhere" / "second.duckdb"
    with pytest.raises(ConfigError, match="owes another warehouse"):
        harness.sync(details=False)
    assert owed.exists()


def test_mixed_timestamp_offsets_are_stored_as_the_same_instants(harness: Harness) -> None:
    harness.sync()
    offsets_seen: set[str] = set()
    for run in harness.world.runs()[:300]:
        raw = harness.world.payload(run["job_id"])["queued_at"]
        offsets_seen.add(raw[19:])
        (stored,) = harness.rows(
            f"select queued_at from sixtyfour.workflow_runs where job_id = '{run['job_id']}'"
        )[0]
        assert stored == parse_instant(raw)
        assert stored.utcoffset() is not None
    assert len(offsets_seen) >= 3, offsets_seen


def test_an_unknown_new_field_becomes_a_column(harness: Harness) -> None:
    harness.sync()
    job_id = harness.world.runs()[0]["job_id"]
    harness.world.set_extra_field("priority_tier", "gold", job_ids=[job_id], touch=True)
    harness.sync()
    rows = harness.rows(
        "select job_id, priority_tier from sixtyfour.workflow_runs where priority_tier is not null"
    )
    assert rows == [(job_id, "gold")]


def test_demo_command_runs_end_to_end(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "pipelines", "demo", "--runs", "800", "--directory", str(directory)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "first sync:" in result.stdout and "runs by status:" in result.stdout
    assert (directory / "sixtyfour-sync.duckdb").exists()
    import duckdb

    with duckdb.connect(str(directory / "sixtyfour-sync.duckdb"), read_only=True) as db:
        (runs,) = db.sql("select count(*) from sixtyfour.workflow_runs").fetchone() or (0,)
        (health,) = db.sql("select count(*) from sixtyfour.workflow_health").fetchone() or (0,)
    assert runs >= 800 and health > 0


def test_demo_runs_again_in_its_folder_and_keeps_what_it_did_not_make(tmp_path: Path) -> None:
    from pipelines.demo import run_demo

    directory = tmp_path / "demo"
    assert run_demo(directory, runs=200, workflows=3, seed=1) == 0
    (directory / "notes.txt").write_text("mine")
    assert run_demo(directory, runs=300, workflows=3, seed=2) == 0
    import duckdb

    with duckdb.connect(str(directory / "sixtyfour-sync.duckdb"), read_only=True) as db:
        (ledger_rows,) = db.sql("select count(*) from sixtyfour.sync_runs").fetchone() or (0,)
    assert ledger_rows == 2  # the second demo's two syncs, not the first one's on top
    assert (directory / "notes.txt").read_text() == "mine"


def test_demo_refuses_a_folder_it_did_not_make_and_leaves_it_alone(tmp_path: Path) -> None:
    directory = tmp_path / "someone-elses"
    directory.mkdir()
    (directory / "sixtyfour-sync.duckdb").write_bytes(b"a warehouse")
    result = subprocess.run(
        [sys.executable, "-m", "pipelines", "demo", "--directory", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "choose an empty or new folder" in result.stderr
    assert sorted(p.name for p in directory.iterdir()) == ["sixtyfour-sync.duckdb"]
    assert (directory / "sixtyfour-sync.duckdb").read_bytes() == b"a warehouse"


def test_a_sync_whose_only_rows_wait_for_the_second_load_is_not_taken_for_a_no_op() -> None:
    """The runner skips dlt's steps when `begin` says only the ledger row is left."""
    from pipelines.sixtyfour.ledger import LEDGER_TABLE
    from pipelines.sixtyfour.prefetch import Extraction, TableStream

    class Client:
        def close(self) -> None:
            pass

    for set_aside in (False, True):
        extraction = Extraction()

        def stream(
            _client: Any,
            _state: Any,
            extraction: Extraction = extraction,
            set_aside: bool = set_aside,
        ) -> TableStream:
            if set_aside:
                extraction.second_load.append(("workflow_runs", pa.table({"job_id": ["j1"]})))
            yield LEDGER_TABLE, pa.table({"sync_id": ["s"]})

        extraction.bind(lambda: cast(Any, Client()), stream)
        assert extraction.begin({"cursor": "x"}) is not set_aside
