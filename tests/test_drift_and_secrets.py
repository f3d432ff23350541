"""Schema drift keeps every value; the API key never reaches logs, state or the warehouse."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pipelines.emulator import EmulatorServer
from pipelines.sixtyfour.shaping import blocks_table, details_table
from tests.conftest import Harness, make_harness, run_cli


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
