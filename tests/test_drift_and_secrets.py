"""Schema drift keeps every value; the API key never reaches logs, state or the warehouse."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipelines.emulator import EmulatorServer, Fault
from pipelines.sixtyfour.changes import TrackedRun
from pipelines.sixtyfour.columns import integer_column
from pipelines.sixtyfour.extract import _run_as_live, _runs_tables
from pipelines.sixtyfour.shaping import blocks_table, details_table, runs_table, workflows_table
from tests.conftest import API_KEY, Harness, make_harness, run_cli


def test_a_known_field_arriving_with_another_type_is_kept_as_text(harness: Harness) -> None:
    harness.sync(details=False)
    job_id = harness.world.runs()[0]["job_id"]
    harness.world.set_extra_field("duration_ms", "12.5s", job_ids=[job_id], touch=True)
    report = harness.sync(details=False)
    assert report.status == "ok"
    row = harness.dicts(
        "select duration_ms, duration_ms__v_text from sixtyfour.workflow_runs"
        f" where job_id = '{job_id}'"
    )[0]
    assert row == {"duration_ms": None, "duration_ms__v_text": "12.5s"}


def test_a_new_field_that_changes_type_between_syncs_does_not_fail(harness: Harness) -> None:
    harness.sync(details=False)
    first, second = (run["job_id"] for run in harness.world.runs()[:2])
    harness.world.set_extra_field("retries", 3, job_ids=[first], touch=True)
    assert harness.sync(details=False).status == "ok"
    harness.world.advance(60)
    harness.world.set_extra_field(
        "retries", {"count": 3, "last": "timeout"}, job_ids=[second], touch=True
    )
    assert harness.sync(details=False).status == "ok"
    values = dict(
        harness.rows(
            "select job_id, retries from sixtyfour.workflow_runs where retries is not null"
        )
    )
    assert values == {first: "3", second: '{"count":3,"last":"timeout"}'}


def test_a_metric_that_changes_type_lands_in_value_text(harness: Harness) -> None:
    harness.sync(details=False)
    job_id = next(r["job_id"] for r in harness.world.runs() if r["metrics"])
    metrics = dict(harness.world.payload(job_id)["metrics"])
    metrics["row_count"] = "unknown"
    harness.world.set_extra_field("metrics", metrics, job_ids=[job_id], touch=True)
    assert harness.sync(details=False).status == "ok"
    (value, text) = harness.rows(
        "select value, value_text from sixtyfour.workflow_runs__metrics"
        f" where job_id = '{job_id}' and metric = 'row_count'"
    )[0]
    assert value is None and text == '"unknown"'


def test_an_integer_past_64_bits_is_kept_as_text_not_a_failure(harness: Harness) -> None:
    harness.sync(details=False)
    job_id = harness.world.runs()[0]["job_id"]
    harness.world.set_extra_field("duration_ms", 2**63, job_ids=[job_id], touch=True)
    assert harness.sync(details=False).status == "ok"
    row = harness.dicts(
        "select duration_ms, duration_ms__v_text from sixtyfour.workflow_runs"
        f" where job_id = '{job_id}'"
    )[0]
    assert row == {"duration_ms": None, "duration_ms__v_text": str(2**63)}


def test_block_values_of_another_type_are_kept_as_text(harness: Harness) -> None:
    harness.sync(details=False)
    job_id = harness.world.runs()[0]["job_id"]
    blocks = [
        {"block_id": "b1", "progress_percentage": "half", "metrics": {"row_count": 2**64 - 1}},
        {"block_id": "b2", "progress_percentage": 40, "metrics": {"row_count": 12}},
    ]
    harness.world.set_extra_field("blocks", blocks, job_ids=[job_id], touch=True)
    assert harness.sync(details=False).status == "ok"
    rows = harness.dicts(
        "select block_id, progress_percentage, progress_percentage__v_text, row_count,"
        " row_count__v_text from sixtyfour.workflow_runs__blocks"
        f" where job_id = '{job_id}' order by block_index"
    )
    assert rows == [
        {
            "block_id": "b1",
            "progress_percentage": None,
            "progress_percentage__v_text": "half",
            "row_count": None,
            "row_count__v_text": str(2**64 - 1),
        },
        {
            "block_id": "b2",
            "progress_percentage": 40.0,
            "progress_percentage__v_text": None,
            "row_count": 12,
            "row_count__v_text": None,
        },
    ]


def test_live_status_counts_of_another_type_are_kept_as_text() -> None:
    live = [
        {"overall_status": "completed", "total_blocks": "3", "completed_blocks": True,
         "overall_progress_percentage": "n/a"},
        {"overall_status": "running", "total_blocks": 4, "completed_blocks": 2**63,
         "overall_progress_percentage": 2**64 - 1},
        {"overall_status": "queued", "total_blocks": 2, "completed_blocks": 1,
         "overall_progress_percentage": 50},
    ]  # fmt: skip
    table = details_table([(f"job-{i}", d) for i, d in enumerate(live)], datetime.now(UTC))
    columns = table.to_pydict()
    assert columns["total_blocks"] == [None, 4, 2]
    assert columns["total_blocks__v_text"] == ["3", None, None]
    assert columns["completed_blocks"] == [None, None, 1]
    assert columns["completed_blocks__v_text"] == ["true", str(2**63), None]
    assert columns["overall_progress_percentage"] == [None, float(2**64 - 1), 50.0]
    assert columns["overall_progress_percentage__v_text"] == ["n/a", None, None]


def test_values_of_the_documented_types_add_no_text_column() -> None:
    blocks = blocks_table([("job-1", "list", [{"block_id": "b", "progress_percentage": 5}])])
    details = details_table(
        [("job-1", {"total_blocks": 2, "completed_blocks": 1, "overall_progress_percentage": 0.5})],
        datetime.now(UTC),
    )
    assert not [name for name in blocks.column_names + details.column_names if "__v_text" in name]


def test_a_fraction_in_an_integer_field_is_kept_as_text_not_cut(harness: Harness) -> None:
    harness.sync(details=False)
    job_id = harness.world.runs()[0]["job_id"]
    harness.world.set_extra_field("duration_ms", 1523.847, job_ids=[job_id], touch=True)
    assert harness.sync(details=False).status == "ok"
    row = harness.dicts(
        "select duration_ms, duration_ms__v_text from sixtyfour.workflow_runs"
        f" where job_id = '{job_id}'"
    )[0]
    assert row == {"duration_ms": None, "duration_ms__v_text": "1523.847"}


def test_a_field_whose_name_folds_like_a_column_gets_a_column_of_its_own(
    harness: Harness,
) -> None:
    harness.sync(details=False)
    job_id = harness.world.runs()[0]["job_id"]
    name = harness.world.payload(job_id)["workflow_name"]
    harness.world.set_extra_field("workflowName", "renamed", job_ids=[job_id], touch=True)
    assert harness.sync(details=False).status == "ok"
    column = "workflow_name__alias_" + hashlib.sha1(b"workflowName").hexdigest()[:8]
    row = harness.dicts(
        f"select workflow_name, {column} from sixtyfour.workflow_runs where job_id = '{job_id}'"
    )[0]
    assert row == {"workflow_name": name, column: "renamed"}


def test_blocks_that_are_not_a_list_are_kept_as_one_block(harness: Harness) -> None:
    harness.sync(details=False)
    job_id = harness.world.runs()[0]["job_id"]
    blocks = {"b1": {"status": "done"}}
    harness.world.set_extra_field("blocks", blocks, job_ids=[job_id], touch=True)
    assert harness.sync(details=False).status == "ok"
    rows = harness.dicts(
        f"select block_index, b1 from sixtyfour.workflow_runs__blocks where job_id = '{job_id}'"
    )
    assert rows == [{"block_index": 0, "b1": '{"status":"done"}'}]


def test_block_metrics_fill_what_the_block_left_empty_and_odd_ones_are_kept() -> None:
    blocks = [
        {"block_id": "a", "processed_count": None, "total_count": 100,
         "metrics": {"processed_count": 42, "total_count": 90, "row_count": 7}},
        {"block_id": "b", "metrics": ["not", "an", "object"]},
        5,
    ]  # fmt: skip
    table = blocks_table([("job-1", "live_status", blocks)]).to_pydict()
    assert table["processed_count"] == [42, None, None]
    assert table["total_count"] == [100, None, None]  # the block's own value wins
    assert table["row_count"] == [7, None, None]
    assert table["metrics"] == [None, '["not","an","object"]', None]
    assert table["value"] == [None, None, "5"]
    one = blocks_table([("job-2", "live_status", 5)]).to_pydict()
    assert (one["block_index"], one["value"]) == ([0], ["5"])


def test_a_workflow_without_an_id_is_left_out_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    workflows: list[dict[str, Any]] = [
        {"id": "w1", "name": "kept"},
        {"name": "no id"},
        {"id": None, "name": "null"},
    ]
    with caplog.at_level(logging.WARNING, logger="sixtyfour_sync"):
        table = workflows_table(workflows)
    assert table.column("name").to_pylist() == ["kept"]
    assert "2 workflows without an id" in caplog.text


def test_a_workflow_listed_twice_is_stored_once_as_last_listed(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    def listed_twice(body: bytes) -> bytes:
        items = orjson.loads(body)
        if not isinstance(items, list) or not items or "job_id" in items[0]:
            return body  # runs or a live_status: the fault's path is a prefix of theirs
        return orjson.dumps([*items, {**items[0], "name": "renamed"}])

    for sync in ("first, appended", "later, merged"):
        harness.server.faults.add(Fault(transform=listed_twice, path="/workflows", times=10**6))
        with caplog.at_level(logging.WARNING, logger="sixtyfour_sync"):
            assert harness.sync(details=False, workflows_refresh_hours=0).status == "ok", sync
        harness.server.faults.clear()
        assert "listed 1 workflows again" in caplog.text, sync
        assert harness.repeated_keys("workflows", "id") == 0, sync
        first = harness.world.workflows()[0]["id"]
        names = harness.rows(f"select name from sixtyfour.workflows where id = '{first}'")
        assert names == [("renamed",)], sync
        assert len(harness.rows("select id from sixtyfour.workflows")) == len(
            harness.world.workflows()
        )
        caplog.clear()
        harness.world.advance(60, new_runs=2)


def test_workflow_ids_of_one_text_are_one_workflow() -> None:
    table = workflows_table([{"id": "7", "name": "first"}, {"id": 7, "name": "second"}])
    assert table.select(["id", "name"]).to_pylist() == [{"id": "7", "name": "second"}]


def test_an_run_as_live_keeps_the_text_stored_beside_its_columns() -> None:
    updated_at = datetime(2026, 11, 1, 0, 5, tzinfo=UTC)
    stored: dict[str, Any] = {
        "job_id": "j1", "workflow_id": "w1", "status": "running",
        "queued_at": datetime(2026, 11, 1, tzinfo=UTC),
        "updated_at": updated_at,
        "started_at": None, "started_at__v_text": "Mon, 01 Jan 2024 00:00:00 GMT",
        "duration_ms": None, "duration_ms__v_text": "12.5s",
    }  # fmt: skip
    updated = int(updated_at.timestamp() * 1_000_000)
    run = TrackedRun("j1", "running", updated, stored)
    live = {"overall_status": "completed", "completed_at": "2026-11-01T00:10:00Z"}
    table = runs_table([_run_as_live(run, live)], "live_status").to_pydict()
    assert table["status"] == ["completed"]
    assert (table["started_at"], table["started_at__v_text"]) == (
        [None],
        ["Mon, 01 Jan 2024 00:00:00 GMT"],
    )
    assert (table["duration_ms"], table["duration_ms__v_text"]) == ([None], ["12.5s"])
    # A stored column of such text, empty for this run: live_status' new text is kept.
    stored["started_at__v_text"] = None
    live["started_at"] = "Tue, 02 Jan 2024 00:00:00 GMT"
    table = runs_table([_run_as_live(run, live)], "live_status").to_pydict()
    assert table["started_at__v_text"] == ["Tue, 02 Jan 2024 00:00:00 GMT"]


def test_a_whole_float_in_an_integer_field_is_the_integer() -> None:
    runs = [
        {"job_id": "j1", "workflow_id": "w", "status": "completed", "duration_ms": 1523.0,
         "updated_at": "2026-11-01T00:00:00Z", "queued_at": "2026-11-01T00:00:00Z"},
    ]  # fmt: skip
    table = runs_table(runs, "/workflows/runs")
    assert table.column("duration_ms").to_pylist() == [1523]
    assert "duration_ms__v_text" not in table.column_names
    columns: dict[str, Any] = {}
    integer_column(columns, "n", [1523.0, 1.5, 2.0**70, None, 7])
    assert columns["n"].to_pylist() == [1523, None, None, None, 7]
    assert columns["n__v_text"].to_pylist() == [None, "1.5", "1.1805916207174113e+21", None, None]


def test_an_run_as_live_gets_its_duration_even_where_text_was_stored() -> None:
    stored: dict[str, Any] = {
        "job_id": "j1", "workflow_id": "w1", "status": "running",
        "queued_at": datetime(2026, 11, 1, tzinfo=UTC),
        "updated_at": datetime(2026, 11, 1, 0, 1, tzinfo=UTC),
        "started_at": datetime(2026, 11, 1, 0, 1, tzinfo=UTC),
        "duration_ms": None, "duration_ms__v_text": "pending",
    }  # fmt: skip
    run = TrackedRun("j1", "running", 1_761_955_260_000_000, stored)
    live = {"overall_status": "completed", "completed_at": "2026-11-01T00:10:00Z"}
    table = runs_table([_run_as_live(run, live)], "live_status")
    assert table.column("duration_ms").to_pylist() == [540_000]
    assert "duration_ms__v_text" not in table.column_names


def test_a_blocks_own_field_named_like_a_text_column_is_kept_under_an_alias() -> None:
    block = {"block_id": "b", "row_count": "many", "row_count__v_text": "mine"}
    table = blocks_table([("j1", "list", [block])]).to_pydict()
    alias = "row_count__v_text__alias_" + hashlib.sha1(b"row_count__v_text").hexdigest()[:8]
    assert (table["row_count__v_text"], table[alias]) == (["many"], ["mine"])
    workflows = workflows_table([{"id": "w1", "lastRunDate": "x", "last_run_date": None}])
    alias = "last_run_date__alias_" + hashlib.sha1(b"lastRunDate").hexdigest()[:8]
    assert workflows.column(alias).to_pylist() == ["x"]


def test_a_blocks_own_job_id_block_index_and_source_are_kept_under_aliases() -> None:
    block = {"block_id": "b", "source": "crm", "job_id": "other", "metrics": {"block_index": 9}}
    table = blocks_table([("j1", "live_status", [block])]).to_pydict()
    keys = (table["job_id"], table["block_index"], table["source"])
    assert keys == (["j1"], [0], ["live_status"])
    kept = {
        name: table[f"{name}__alias_" + hashlib.sha1(name.encode()).hexdigest()[:8]]
        for name in ("source", "job_id", "block_index")
    }
    assert kept == {"source": ["crm"], "job_id": ["other"], "block_index": ["9"]}
    assert blocks_table([]).num_rows == 0


def test_only_null_or_empty_blocks_mean_no_blocks() -> None:
    def run(job_id: str, blocks: Any) -> dict[str, Any]:
        instant = "2026-11-01T00:00:00Z"
        return {"job_id": job_id, "workflow_id": "w", "status": "completed", "blocks": blocks,
                "updated_at": instant, "queued_at": instant}  # fmt: skip

    runs = [run("none", None), run("empty", []), run("object", {}), run("text", ""),
            run("zero", 0), run("false", False), run("word", "n/a")]  # fmt: skip
    with_blocks: set[str] = set()
    tables = dict(_runs_tables(runs, with_blocks))
    assert with_blocks == {"zero", "false", "word"}
    blocks = tables["workflow_runs__blocks"].to_pydict()
    assert blocks["job_id"] == ["zero", "false", "word"]
    assert blocks["value"] == ["0", "false", "n/a"]


MARKER = "sk-marker-5f1e2d3c4b5a"


def files_containing(root: Path, needle: bytes) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file() and needle in path.read_bytes()]


def test_api_key_never_appears_in_output_state_traces_or_warehouse(tmp_path: Path) -> None:
    for harness in make_harness(tmp_path):
        keyed = EmulatorServer(harness.world, api_key=MARKER, rate_limit_per_minute=None)
        harness.server = keyed.start()
        try:
            outputs = []
            for args in (
                ("run", "--verbose"),
                ("status", "--verbose"),
                ("backfill", "--verbose", "--no-details"),
            ):
                result = run_cli(
                    harness,
                    *args,
                    SOURCES__SIXTYFOUR__API_KEY=MARKER,
                    DLT_DATA_DIR=str(tmp_path / "dlt"),
                )
                assert result.returncode in (0, 3), result.stderr
                outputs.append(result.stdout + result.stderr)
            # A refused key in verbose mode: the error path must not echo it either.
            refused = run_cli(
                harness,
                "run",
                "--verbose",
                SOURCES__SIXTYFOUR__API_KEY=MARKER + "-old",
                DLT_DATA_DIR=str(tmp_path / "dlt"),
            )
            assert refused.returncode == 2
            outputs.append(refused.stdout + refused.stderr)
        finally:
            keyed.stop()
        assert all(MARKER not in text for text in outputs)
        assert "INFO" in outputs[0]  # verbose output really was produced
        assert files_containing(tmp_path / "dlt", MARKER.encode()) == []
        assert MARKER.encode() not in harness.duckdb_path.read_bytes()
        assert (tmp_path / "dlt").exists() and harness.duckdb_path.exists()


def test_an_answer_echoing_the_key_is_quoted_without_it_in_verbose_tracebacks(
    harness: Harness,
) -> None:
    # A broken answer (a proxy's error page, say) may repeat the key the request carried.
    harness.server.faults.add(Fault(body=f"<html>bad key {API_KEY}</html>".encode(), times=20))
    result = run_cli(harness, "run", "--verbose")
    assert result.returncode == 5, result.stderr
    assert "Traceback" in result.stderr and "<html>bad key ***</html>" in result.stderr
    assert API_KEY not in result.stdout + result.stderr
