"""How rows land: appended into empty tables, merged otherwise, one version of a run per load."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
import pytest

from pipelines import warehouse
from pipelines.emulator import Fault
from pipelines.sixtyfour import extract, settings, sixtyfour
from tests.conftest import Harness, make_harness
from tests.test_sync_core import assert_warehouse_matches_api


def staging_exists(harness: Harness) -> bool:
    rows = harness.rows(
        "select count(*) from information_schema.schemata where schema_name = 'sixtyfour_staging'"
    )
    return rows[0][0] > 0


def latest_stored_schema(harness: Harness) -> dict[str, Any]:
    """The schema dlt stored in the warehouse with its latest load."""
    (schema,) = harness.rows(
        "select schema from sixtyfour._dlt_version order by inserted_at desc limit 1"
    )[0]
    return dict(json.loads(schema))


def stored_dispositions(harness: Harness) -> dict[str, str]:
    tables = latest_stored_schema(harness)["tables"]
    return {name: table.get("write_disposition") for name, table in tables.items()}


def test_first_sync_appends_into_the_empty_warehouse_and_later_ones_merge(
    harness: Harness,
) -> None:
    harness.sync(details=False)
    # Nothing to replace in an empty warehouse: no staging copy, no merge statements.
    assert not staging_exists(harness)
    assert stored_dispositions(harness)["workflow_runs"] == "append"
    assert_warehouse_matches_api(harness)

    harness.world.advance(600, new_runs=20)
    harness.sync(details=False)
    assert staging_exists(harness)
    dispositions = stored_dispositions(harness)
    assert dispositions["workflow_runs"] == dispositions["workflow_runs__metrics"] == "merge"
    assert_warehouse_matches_api(harness)
    assert harness.duplicate_runs() == 0


def test_a_table_that_already_holds_rows_is_merged_not_appended(harness: Harness) -> None:
    harness.sync(details=False)
    with_rows = harness.rows("select count(*) from sixtyfour.workflows")[0][0]
    # The runs go (say a user emptied the table by hand); the workflows stay.
    import duckdb

    with duckdb.connect(str(harness.duckdb_path)) as db:
        db.execute("delete from sixtyfour.workflow_runs")
        db.execute("delete from sixtyfour.workflow_runs__metrics")
    harness.sync(details=False, backfill=True)
    assert harness.rows("select count(*) from sixtyfour.workflows")[0][0] == with_rows
    assert_warehouse_matches_api(harness)


def fsst_segments(harness: Harness) -> list[tuple[str, str]]:
    """(table, column) of every stored segment DuckDB compressed with FSST."""
    tables = harness.rows(
        "select table_name from duckdb_tables() where schema_name = 'sixtyfour' order by all"
    )
    found: list[tuple[str, str]] = []
    for (table,) in tables:
        found += [
            (table, column)
            for (column,) in harness.rows(
                f"select column_name from pragma_storage_info('sixtyfour.{table}') "
                "where compression ilike '%fsst%'"
            )
        ]
    return found


def test_text_is_stored_without_fsst_whether_appended_or_merged(harness: Harness) -> None:
    # DuckDB picks FSST for some metric texts of this history when it is allowed to.
    harness.sync(details=False)
    assert fsst_segments(harness) == []
    harness.world.advance(600, new_runs=20)
    harness.sync(details=False, backfill=True)  # merges every run again
    assert fsst_segments(harness) == []
    assert_warehouse_matches_api(harness)


@pytest.fixture
def one_busy_workflow(tmp_path: Path) -> Iterator[Harness]:
    # 1,200 runs in one workflow: the newest 500 overall do not reach back, so a backfill
    # reads the workflow's page, then one page per status.
    yield from make_harness(tmp_path, runs=1200, workflows=1)


def changed_run(body: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    """The page with its first completed run (if any) changed as `change` says."""
    runs = json.loads(body)
    completed = [r for r in runs if r["status"] == "completed"]
    if completed:
        change(completed[0])
    return json.dumps(runs).encode()


def later(run: dict[str, Any]) -> None:
    """A newer version of the run: five minutes later, other metrics."""
    updated = datetime.fromisoformat(run["updated_at"]) + timedelta(minutes=5)
    run["updated_at"] = updated.isoformat()
    run["metrics"] = {"rows_out": 7, "late_fix": 1}


def change_mid_backfill(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The newest completed run, armed to change between two pages of a backfill.

    It changes between its workflow's page and its status=completed page, after a batch
    already yielded its older version, which is returned.
    """
    # Tiny batches: the workflow's page is yielded before its status pages are read.
    monkeypatch.setattr(settings, "RUNS_PER_BATCH", 10)
    workflow_id = harness.world.workflows()[0]["id"]
    harness.server.faults.add(
        Fault(
            transform=lambda body: changed_run(body, later),
            query={"workflow_id": workflow_id, "status": "completed"},
        )
    )
    return next(
        r for r in json.loads(harness.world.runs_json(limit=500)) if r["status"] == "completed"
    )


def test_run_that_changes_after_its_older_version_was_staged_loads_only_the_newer(
    one_busy_workflow: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = one_busy_workflow
    newest_completed = change_mid_backfill(harness, monkeypatch)
    job_id = newest_completed["job_id"]
    report = harness.sync(details=False, backfill=True)
    assert report.runs_loaded == report.runs_seen + 1  # that run twice

    (copies, updated_at) = harness.rows(
        f"select count(*), max(updated_at) from sixtyfour.workflow_runs where job_id = '{job_id}'"
    )[0]
    assert copies == 1
    expected = datetime.fromisoformat(newest_completed["updated_at"]) + timedelta(minutes=5)
    assert updated_at == expected
    metrics = harness.rows(
        "select metric, value from sixtyfour.workflow_runs__metrics "
        f"where job_id = '{job_id}' order by metric"
    )
    assert metrics == [("late_fix", 1.0), ("rows_out", 7.0)]
    assert harness.repeated_keys("workflow_runs__metrics", "job_id, metric") == 0


def dispositions_loaded_with(harness: Harness) -> list[str]:
    """workflow_runs' write disposition in the schema each load landed with, oldest first."""
    schemas = harness.rows(
        "select v.schema from sixtyfour._dlt_loads l join sixtyfour._dlt_version v "
        "on v.version_hash = l.schema_version_hash order by l.load_id"
    )
    return [
        json.loads(schema)["tables"]["workflow_runs"]["write_disposition"] for (schema,) in schemas
    ]


def test_a_first_backfill_whose_runs_change_while_read_appends_and_merges_only_those(
    one_busy_workflow: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = one_busy_workflow
    change_mid_backfill(harness, monkeypatch)
    report = harness.sync(details=False, backfill=True)
    assert report.runs_loaded == report.runs_seen + 1
    # The backfill's package appends; only the package of the newer versions merges.
    assert dispositions_loaded_with(harness) == ["append", "merge"]
    assert harness.duplicate_runs() == 0
    assert harness.repeated_keys("workflow_runs__metrics", "job_id, metric") == 0


def changed_now_with_blocks(now: datetime) -> Callable[[dict[str, Any]], None]:
    def change(run: dict[str, Any]) -> None:
        run["updated_at"] = now.isoformat()
        run["blocks"] = [{"block_id": "b1", "block_name": "find_email", "status": "completed"}]

    return change


def test_run_awaiting_detail_that_arrives_with_list_blocks_is_detailed_by_the_next_sync(
    harness: Harness,
) -> None:
    harness.sync(details=False)
    newest_completed = next(
        r for r in json.loads(harness.world.runs_json(limit=500)) if r["status"] == "completed"
    )
    job_id = newest_completed["job_id"]
    # It changes again and its list payload carries blocks, while it waits for its detail.
    harness.server.faults.add(
        # The newest page and the active one (which has no completed run) go out together.
        Fault(
            transform=lambda body: changed_run(body, changed_now_with_blocks(harness.world.now)),
            query={"limit": "500"},
            times=2,
        )
    )
    harness.sync(max_detail_requests=5000)
    blocks = harness.rows(
        "select block_index, source from sixtyfour.workflow_runs__blocks "
        f"where job_id = '{job_id}' order by block_index"
    )
    assert blocks == [(0, "list")]  # one set of blocks: its detail waits
    assert not harness.rows(
        f"select 1 from sixtyfour.workflow_run_details where job_id = '{job_id}'"
    )
    harness.sync(max_detail_requests=5000)
    sources = {
        s
        for (s,) in harness.rows(
            f"select source from sixtyfour.workflow_runs__blocks where job_id = '{job_id}'"
        )
    }
    assert sources == {"live_status"}
    assert harness.repeated_keys("workflow_runs__blocks", "job_id, block_index") == 0


def test_a_backfill_still_reads_block_detail_up_to_the_cap(harness: Harness) -> None:
    harness.sync(details=False)
    report = harness.sync(backfill=True, max_detail_requests=50)
    assert report.detail_requests == 50
    assert harness.rows("select count(*) from sixtyfour.workflow_run_details")[0][0] == 50


def test_the_source_on_its_own_also_loads_the_newer_version(
    one_busy_workflow: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In someone else's pipeline nothing loads a second package: the newer version must
    # land in the one load there is.
    harness = one_busy_workflow
    newest_completed = change_mid_backfill(harness, monkeypatch)
    pipeline = dlt.pipeline(
        pipeline_name="own_pipeline",
        destination=dlt.destinations.duckdb(str(harness.duckdb_path)),
        dataset_name="sixtyfour",
    )
    pipeline.run(sixtyfour(backfill=True, details=False, **harness.source_args()))
    job_id = newest_completed["job_id"]
    (copies, updated_at) = harness.rows(
        f"select count(*), max(updated_at) from sixtyfour.workflow_runs where job_id = '{job_id}'"
    )[0]
    assert copies == 1
    assert updated_at == datetime.fromisoformat(newest_completed["updated_at"]) + timedelta(
        minutes=5
    )
    assert harness.duplicate_runs() == 0


def test_rows_another_sync_loaded_since_the_start_are_kept_once(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A sync with its own state (another DLT_DATA_DIR) filled the tables after this one
    # found them empty: both appended the same runs.
    harness.sync(details=False)
    real = warehouse.tables_without_rows
    calls: list[int] = []

    def empty_at_the_start(client: Any, tables: Any) -> frozenset[str]:
        calls.append(1)
        return frozenset(tables) if len(calls) == 1 else real(client, tables)

    monkeypatch.setattr(warehouse, "tables_without_rows", empty_at_the_start)
    harness.sync(details=False, backfill=True)
    assert len(calls) == 2  # found empty, then checked again before the load
    assert_warehouse_matches_api(harness)
    assert harness.repeated_keys("workflow_runs__metrics", "job_id, metric") == 0


def run_changed(body: bytes, job_id: str) -> bytes:
    """The page with that run, if it holds it, changed as `later` says."""
    runs = json.loads(body)
    for run in runs:
        if run["job_id"] == job_id:
            later(run)
    return json.dumps(runs).encode()


def test_a_run_only_its_workflows_pages_show_that_changes_between_them_loads_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not among the newest 500 overall: only its workflow's pages can show it twice, and the
    # sync must still know the older version was staged when the newer one arrives.
    monkeypatch.setattr(settings, "RUNS_PER_BATCH", 10)
    for harness in make_harness(tmp_path, runs=2400, workflows=2):
        workflow_id = harness.world.workflows()[0]["id"]
        newest = {r["job_id"] for r in json.loads(harness.world.runs_json(limit=500))}
        own_page = json.loads(harness.world.runs_json(limit=500, workflow_id=workflow_id))
        target = next(
            r for r in own_page if r["status"] == "completed" and r["job_id"] not in newest
        )
        job_id: str = target["job_id"]
        harness.server.faults.add(
            Fault(
                transform=partial(run_changed, job_id=job_id),
                query={"workflow_id": workflow_id, "status": "completed"},
            )
        )
        report = harness.sync(details=False, backfill=True)
        assert report.runs_loaded == report.runs_seen + 1  # that run twice
        (copies, updated_at) = harness.rows(
            "select count(*), max(updated_at) from sixtyfour.workflow_runs "
            f"where job_id = '{target['job_id']}'"
        )[0]
        assert copies == 1
        assert updated_at == datetime.fromisoformat(target["updated_at"]) + timedelta(minutes=5)
        assert harness.duplicate_runs() == 0


def child_primary_keys(schema: Mapping[str, Any]) -> dict[str, list[str]]:
    return {
        table: [
            name for name, c in schema["tables"][table]["columns"].items() if c.get("primary_key")
        ]
        for table in ("workflow_runs__metrics", "workflow_runs__blocks")
    }


NO_CHILD_KEYS: dict[str, list[str]] = {"workflow_runs__metrics": [], "workflow_runs__blocks": []}


def test_child_rows_are_replaced_by_their_runs_job_id_alone(harness: Harness) -> None:
    harness.sync(details=False)
    harness.world.advance(600, new_runs=20)
    harness.sync(details=False)
    stored = latest_stored_schema(harness)
    # No primary key beside the merge key: dlt's delete then joins on job_id only.
    assert child_primary_keys(stored) == NO_CHILD_KEYS
    for table in NO_CHILD_KEYS:
        columns = stored["tables"][table]["columns"]
        assert [name for name, c in columns.items() if c.get("merge_key")] == ["job_id"], table
    assert_warehouse_matches_api(harness)
    assert harness.repeated_keys("workflow_runs__metrics", "job_id, metric") == 0


def test_a_stored_primary_key_on_child_rows_is_dropped_at_the_next_sync(harness: Harness) -> None:
    # Older versions, and the source in one's own pipeline (dlt deduplicating), store
    # (job_id, metric) and (job_id, block_index) as primary keys: dlt keeps a stored key.
    own = dlt.pipeline(
        pipeline_name=settings.PIPELINE_NAME,
        destination=dlt.destinations.duckdb(str(harness.duckdb_path)),
        dataset_name=settings.DATASET_NAME,
    )
    own.run(sixtyfour(backfill=True, details=False, **harness.source_args()))
    assert child_primary_keys(own.default_schema.to_dict()) == {
        "workflow_runs__metrics": ["job_id", "metric"],
        "workflow_runs__blocks": ["job_id", "block_index"],
    }
    harness.world.advance(600, new_runs=30)
    assert harness.sync(details=False).status == "ok"
    assert child_primary_keys(latest_stored_schema(harness)) == NO_CHILD_KEYS
    assert_warehouse_matches_api(harness)
    assert harness.repeated_keys("workflow_runs__metrics", "job_id, metric") == 0
    assert harness.repeated_keys("workflow_runs__blocks", "job_id, block_index") == 0


def test_batches_reach_dlt_joined_per_table_and_nothing_is_lost() -> None:
    def runs(ids: list[str], **extra: pa.Array) -> pa.Table:
        return pa.table({"job_id": pa.array(ids), **extra})

    stream = [
        ("workflow_runs", runs(["a", "b"])),
        ("workflow_runs__metrics", pa.table({"job_id": ["a"], "value": [1.0]})),
        ("workflow_runs", runs(["c"], duration_ms__v_text=pa.array(["soon"]))),
        ("workflow_runs", runs(["d"])),  # the fourth run: held tables go on
        ("workflow_runs", runs(["e"], duration_ms__v_text=pa.array([7]))),  # another type
        ("workflow_runs", runs(["f"], duration_ms__v_text=pa.array(["x"]))),
        ("sync_runs", pa.table({"sync_id": ["s"]})),
    ]
    out = list(extract.joined_tables(iter(stream), runs_per_item=4))
    assert [(name, table.num_rows) for name, table in out] == [
        ("workflow_runs", 4),
        ("workflow_runs__metrics", 1),
        ("workflow_runs", 1),  # text and integer in one column: not joined
        ("workflow_runs", 1),
        ("sync_runs", 1),
    ]
    first = out[0][1].to_pydict()
    assert first["job_id"] == ["a", "b", "c", "d"]
    assert first["duration_ms__v_text"] == [None, None, "soon", None]
