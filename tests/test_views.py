"""The SQL views: applied to hand-made tables in a real DuckDB file and a real PostgreSQL
schema, then read back to check the numbers they report."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import psycopg2
import pytest

from pipelines.views import (
    InvalidDatasetName,
    ViewCycle,
    apply_views,
    drop_views,
    existing_tables_sql,
    view_names,
)
from tests.conftest import POSTGRES_URL, postgres_address

# Not UTC on purpose: day boundaries in the views must be UTC whatever the session says.
SESSION_TIME_ZONE = "America/Los_Angeles"

ALL_TABLES = {
    "workflows",
    "workflow_runs",
    "workflow_runs__metrics",
    "workflow_runs__blocks",
    "sync_runs",
}

DDL = {
    "workflows": """
        id text, user_uuid text, org_id text, name text, description text, status text,
        step text, created_at timestamp with time zone, updated_at timestamp with time zone,
        last_run_date timestamp with time zone, workflow_definition text""",
    # `priority` stands for a field the API added later: the views must not mind it.
    "workflow_runs": """
        job_id text, workflow_id text, status text, workflow_name text, step text,
        user_id text, created_at timestamp with time zone, updated_at timestamp with time zone,
        queued_at timestamp with time zone, started_at timestamp with time zone,
        completed_at timestamp with time zone, duration_ms bigint, status_reason text,
        error_message text, blocks_count bigint, priority text, _dlt_load_id text""",
    "workflow_runs__metrics": """
        job_id text, metric text, value double precision, value_text text, _dlt_id text""",
    "workflow_runs__blocks": """
        job_id text, block_index bigint, block_id text, block_name text,
        sequence_number bigint, status text, started_at timestamp with time zone,
        completed_at timestamp with time zone, processed_count bigint, total_count bigint,
        row_count bigint, error_message text""",
    "sync_runs": """
        sync_id text, started_at timestamp with time zone,
        finished_at timestamp with time zone, status text, api_requests bigint,
        http_retries bigint, rate_limited bigint, runs_seen bigint, runs_loaded bigint,
        partitions bigint, gap_detected boolean, gap_detail text, details_unread bigint,
        mode text,
        cursor_before timestamp with time zone, cursor_after timestamp with time zone,
        error text""",
}

WORKFLOWS = [
    {"id": "wf-enrich", "name": "Enrich leads v2", "status": "active"},
    {"id": "wf-score", "name": "Score accounts", "status": "active"},
    {"id": "wf-email", "name": "Find emails", "status": "active"},
]

# fmt: off
# Times are UTC. a3 is queued at 03:00 UTC on 2 May, still 1 May in Los Angeles.
RUN_COLUMNS = (
    "job_id", "workflow_id", "status", "workflow_name", "queued_at", "started_at",
    "completed_at", "updated_at", "duration_ms", "error_message",
)
RUNS = [
    ("a1", "wf-enrich", "completed", "Enrich leads", "2024-05-01 10:00:00+00",
     "2024-05-01 10:00:30+00", "2024-05-01 10:02:30+00", None, 120000, None),
    ("a2", "wf-enrich", "succeeded", "Enrich leads", "2024-05-01 12:00:00+00",
     "2024-05-01 12:00:10+00", "2024-05-01 12:05:10+00", None, None, None),
    ("a3", "wf-enrich", "failed", "Enrich leads", "2024-05-02 03:00:00+00",
     "2024-05-02 03:00:05+00", "2024-05-02 03:01:05+00", None, 60000,
     "Enrichment provider timed out"),
    ("a4", "wf-enrich", "canceled", "Enrich leads", "2024-05-02 04:00:00+00",
     "2024-05-02 04:00:20+00", "2024-05-02 04:00:50+00", None, 30000, None),
    ("a5", "wf-enrich", "running", "Enrich leads v2", "2024-05-03 09:00:00+00",
     "2024-05-03 09:01:00+00", None, "2024-05-03 09:30:00+00", None, None),
    ("b1", "wf-score", "completed", "Score accounts", "2024-05-01 08:00:00+00",
     "2024-05-01 08:01:00+00", "2024-05-01 08:11:00+00", None, 600000, None),
    ("b2", "wf-score", "failed", "Score accounts", "2024-05-01 09:00:00+00",
     "2024-05-01 09:00:30+00", None, "2024-05-01 09:20:00+00", None, "Invalid input column"),
    ("b3", "wf-score", "queued", "Score accounts", "2024-05-03 10:00:00+00",
     None, None, "2024-05-03 10:00:00+00", None, None),
    ("b4", "wf-score", "cancelled", "Score accounts", "2024-05-01 11:00:00+00",
     None, "2024-05-01 11:05:00+00", None, None, None),
    ("c1", "wf-email", "completed", "Find emails", "2024-05-02 10:00:00+00",
     "2024-05-02 10:00:00+00", "2024-05-02 10:00:40+00", None, 40000, None),
]

# value_text holds the JSON of a value that is not a number
METRIC_COLUMNS = ("job_id", "metric", "value", "value_text")
METRICS = [
    ("a1", "row_count", 100, None),
    ("a1", "costs.total_usd", 1.5, None),
    ("a1", "costs.llm_usd", 1.0, None),
    ("a1", "credits_used", 30, None),
    ("a1", "model", None, '"gpt-4o"'),
    ("a2", "row_count", 200, None),
    ("a2", "costs.total_usd", 2.5, None),
    ("a2", "credits_used", 50, None),
    ("a3", "row_count", 0, None),
    ("a3", "costs.total_usd", 0.25, None),
    ("b1", "row_count", 1000, None),
    ("b1", "rows_in", 1000, None),
    ("b1", "rows_out", 950, None),
    ("b1", "costs.total_usd", 4.0, None),
    ("b1", "dataframe_type", None, '"pandas"'),
    ("c1", "notes", None, '{"source": "csv"}'),
]

BLOCK_COLUMNS = (
    "job_id", "block_index", "block_name", "status", "started_at", "completed_at",
    "processed_count",
)
BLOCKS = [
    ("a1", 0, "find_email", "completed", "2024-05-01 10:00:30+00", "2024-05-01 10:01:30+00", 100),
    ("a1", 1, "score", "completed", "2024-05-01 10:01:30+00", "2024-05-01 10:02:00+00", 100),
    ("a3", 0, "find_email", "completed", "2024-05-02 03:00:05+00", "2024-05-02 03:00:25+00", 50),
    ("a3", 1, "score", "failed", "2024-05-02 03:00:25+00", "2024-05-02 03:01:05+00", 10),
    ("a5", 0, "find_email", "running", "2024-05-03 09:01:00+00", None, 40),
    ("a5", 1, "score", "pending", None, None, None),
]

SYNC_COLUMNS = (
    "sync_id", "started_at", "finished_at", "status", "gap_detected", "gap_detail",
    "details_unread", "error",
)
SYNCS = [
    ("s1", "2024-05-03 08:00:00+00", "2024-05-03 08:00:42+00", "ok", False, None, 2, None),
    ("s2", "2024-05-03 09:00:00+00", "2024-05-03 09:01:30+00", "gap", True,
     "wf-enrich: 500 runs changed, oldest reachable queued_at 2024-05-02T00:00:00Z", 0, None),
    ("s3", "2024-05-03 10:00:00+00", "2024-05-03 10:00:05+00", "failed", False, None, None,
     "API answered 500"),
]
# fmt: on


@dataclass
class Warehouse:
    """One real database with a fresh schema, and the two ways the tests talk to it."""

    backend: str
    dataset: str
    cursor: Any

    def execute(self, sql: str) -> None:
        self.cursor.execute(sql)

    def rows(self, sql: str) -> list[dict[str, Any]]:
        self.cursor.execute(sql)
        columns = [column[0] for column in self.cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in self.cursor.fetchall()]

    def view(self, name: str, order_by: str = "") -> list[dict[str, Any]]:
        order = f" order by {order_by}" if order_by else ""
        return self.rows(f'select * from "{self.dataset}".{name}{order}')

    def tables(self) -> set[str]:
        return {row["table_name"] for row in self.rows(existing_tables_sql(self.dataset))}

    def views(self) -> set[str]:
        return {
            row["table_name"]
            for row in self.rows(
                "select table_name from information_schema.tables "
                f"where table_schema = '{self.dataset}' and table_type = 'VIEW'"
            )
        }


def _literal(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _by_column(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> list[dict[str, object]]:
    return [dict(zip(columns, row, strict=True)) for row in rows]


def _insert(warehouse: Warehouse, table: str, rows: Sequence[Mapping[str, object]]) -> None:
    for row in rows:
        columns = ", ".join(row)
        values = ", ".join(_literal(value) for value in row.values())
        warehouse.execute(
            f'insert into "{warehouse.dataset}".{table} ({columns}) values ({values})'
        )


def create_tables(warehouse: Warehouse, tables: set[str] = ALL_TABLES) -> None:
    """Create the pipeline's tables as dlt leaves them, filled with the sample rows."""
    for table in sorted(tables):
        warehouse.execute(f'create table "{warehouse.dataset}".{table} ({DDL[table]})')
    runs = _by_column(RUN_COLUMNS, RUNS)
    for run in runs:
        run["created_at"] = run["queued_at"]
        run["updated_at"] = run["updated_at"] or run["completed_at"] or run["queued_at"]
        run |= {"blocks_count": 2, "priority": "normal", "_dlt_load_id": "1714730000.1"}
    metrics = _by_column(METRIC_COLUMNS, METRICS)
    for metric in metrics:
        metric["_dlt_id"] = f"{metric['job_id']}-{metric['metric']}"
    blocks = _by_column(BLOCK_COLUMNS, BLOCKS)
    for block in blocks:
        block["sequence_number"] = block["block_index"]
        block["block_id"] = f"{block['job_id']}-{block['block_index']}"
    syncs = _by_column(SYNC_COLUMNS, SYNCS)
    for sync in syncs:
        sync |= {"api_requests": 12, "http_retries": 1, "rate_limited": 0, "partitions": 3}
        # s1 was the first sync (no cursor yet); the others read on from the cursor.
        sync |= {
            "mode": "run",
            "cursor_before": None if sync["sync_id"] == "s1" else "2024-05-03 07:00:00+00",
        }
        sync |= {"runs_seen": 10, "runs_loaded": 10}
    rows: dict[str, Sequence[Mapping[str, object]]] = {
        "workflows": [dict(workflow, org_id="org-1") for workflow in WORKFLOWS],
        "workflow_runs": runs,
        "workflow_runs__metrics": metrics,
        "workflow_runs__blocks": blocks,
        "sync_runs": syncs,
    }
    for table in sorted(tables):
        _insert(warehouse, table, rows[table])


@pytest.fixture
def duckdb_warehouse(tmp_path: Path) -> Iterator[Warehouse]:
    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    connection.execute(f"set timezone = '{SESSION_TIME_ZONE}'")
    connection.execute("create schema sixtyfour")
    yield Warehouse("duckdb", "sixtyfour", connection)
    connection.close()


@pytest.fixture
def postgres_warehouse() -> Iterator[Warehouse]:
    try:
        connection = psycopg2.connect(POSTGRES_URL, connect_timeout=3)
    except psycopg2.OperationalError as error:
        reason = str(error).strip().splitlines()[0]
        pytest.skip(f"PostgreSQL is not reachable at {postgres_address()}: {reason}")
    connection.autocommit = True
    schema = f"test_views_{uuid.uuid4().hex[:12]}"
    cursor = connection.cursor()
    cursor.execute(f"set time zone '{SESSION_TIME_ZONE}'")
    cursor.execute(f'create schema "{schema}"')
    try:
        yield Warehouse("postgres", schema, cursor)
    finally:
        cursor.execute(f'drop schema "{schema}" cascade')
        connection.close()


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request: pytest.FixtureRequest) -> Warehouse:
    return request.getfixturevalue(f"{request.param}_warehouse")


@pytest.fixture
def loaded(warehouse: Warehouse) -> Warehouse:
    """A warehouse with every table filled and every view applied."""
    create_tables(warehouse)
    created = apply_views(warehouse.execute, warehouse.dataset, warehouse.tables())
    assert created == view_names()
    return warehouse


def by_key(rows: list[dict[str, Any]], key: str) -> dict[Any, dict[str, Any]]:
    return {row[key]: row for row in rows}


def test_every_view_is_created_when_every_table_exists(loaded: Warehouse) -> None:
    assert loaded.views() == set(view_names())
    assert len(view_names()) == 13


def test_staging_spells_each_status_one_way(loaded: Warehouse) -> None:
    runs = by_key(loaded.view("stg_workflow_runs"), "job_id")
    assert runs["a2"]["status"] == "completed"
    assert runs["a2"]["status_raw"] == "succeeded"
    assert runs["a4"]["status"] == "cancelled"
    assert runs["a4"]["status_raw"] == "canceled"
    assert {row["status"] for row in runs.values()} == {
        "queued",
        "running",
        "completed",
        "failed",
        "cancelled",
    }
    assert [job for job, row in sorted(runs.items()) if row["is_terminal"]] == [
        "a1",
        "a2",
        "a3",
        "a4",
        "b1",
        "b2",
        "b4",
        "c1",
    ]
    assert [job for job, row in sorted(runs.items()) if row["is_failed"]] == ["a3", "b2"]


def test_staging_times_runs_from_duration_or_timestamps(loaded: Warehouse) -> None:
    runs = by_key(loaded.view("stg_workflow_runs"), "job_id")
    assert runs["a1"]["run_seconds"] == pytest.approx(120.0)  # duration_ms
    assert runs["a2"]["run_seconds"] == pytest.approx(300.0)  # completed - started
    assert runs["a5"]["run_seconds"] is None  # still running, no duration yet
    assert runs["a1"]["queue_wait_seconds"] == pytest.approx(30.0)
    assert runs["b3"]["queue_wait_seconds"] is None  # not started
    assert "priority" not in runs["a1"]  # a field the API added later stays out


def test_run_date_is_the_utc_day_whatever_the_session_time_zone(loaded: Warehouse) -> None:
    runs = by_key(loaded.view("stg_workflow_runs"), "job_id")
    # queued 03:00 UTC on 2 May, which is still 1 May in the session's Los Angeles time
    assert runs["a3"]["run_date"] == date(2024, 5, 2)


def test_workflow_health_reports_failure_rate_over_terminal_runs(loaded: Warehouse) -> None:
    health = by_key(loaded.view("workflow_health"), "workflow_id")
    enrich = health["wf-enrich"]
    assert enrich["workflow_name"] == "Enrich leads v2"  # named after its newest run
    assert (enrich["runs"], enrich["completed"], enrich["failed"], enrich["cancelled"]) == (
        5,
        2,
        1,
        1,
    )
    assert (enrich["running"], enrich["terminal_runs"]) == (1, 4)
    assert enrich["failure_rate"] == pytest.approx(0.25)
    assert enrich["last_status"] == "running"
    assert enrich["last_failure_at"] == datetime(2024, 5, 2, 3, 1, 5, tzinfo=UTC)
    score = health["wf-score"]
    assert score["failure_rate"] == pytest.approx(1 / 3)
    # b2 failed without completed_at: its last update dates the failure
    assert score["last_failure_at"] == datetime(2024, 5, 1, 9, 20, tzinfo=UTC)
    assert health["wf-email"]["failure_rate"] == 0.0
    assert health["wf-email"]["last_failure_at"] is None


def test_daily_runs_counts_failures_and_percentiles_per_utc_day(loaded: Warehouse) -> None:
    days = {(row["run_date"], row["workflow_id"]): row for row in loaded.view("daily_runs")}
    first = days[(date(2024, 5, 1), "wf-enrich")]
    assert (first["runs"], first["failed"], first["failure_rate"]) == (2, 0, 0.0)
    assert first["p50_run_seconds"] == pytest.approx(210.0)  # between 120 and 300
    assert first["p95_run_seconds"] == pytest.approx(291.0)
    second = days[(date(2024, 5, 2), "wf-enrich")]
    assert (second["runs"], second["failed"], second["cancelled"]) == (2, 1, 1)
    assert second["failure_rate"] == pytest.approx(0.5)
    assert second["p50_run_seconds"] is None  # no completed run that day
    in_flight = days[(date(2024, 5, 3), "wf-enrich")]
    assert in_flight["failure_rate"] is None  # nothing finished yet: no rate, not zero
    # b1 completed, b2 failed, b4 cancelled
    assert days[(date(2024, 5, 1), "wf-score")]["failure_rate"] == pytest.approx(1 / 3)
    assert len(days) == 6


def test_run_durations_gives_percentiles_of_completed_runs(loaded: Warehouse) -> None:
    durations = by_key(loaded.view("run_durations"), "workflow_id")
    enrich = durations["wf-enrich"]
    assert enrich["timed_runs"] == 2
    assert enrich["p50_run_seconds"] == pytest.approx(210.0)
    assert enrich["p90_run_seconds"] == pytest.approx(282.0)
    assert enrich["p95_run_seconds"] == pytest.approx(291.0)
    assert enrich["max_run_seconds"] == pytest.approx(300.0)
    # queue waits of the five started runs: 5, 10, 20, 30, 60 seconds
    assert enrich["started_runs"] == 5
    assert enrich["p50_queue_wait_seconds"] == pytest.approx(20.0)
    assert enrich["p95_queue_wait_seconds"] == pytest.approx(54.0)
    assert enrich["max_queue_wait_seconds"] == pytest.approx(60.0)
    assert durations["wf-score"]["p50_queue_wait_seconds"] == pytest.approx(45.0)


def test_run_costs_are_us_dollars_from_reported_metrics(loaded: Warehouse) -> None:
    costs = by_key(loaded.view("run_costs"), "job_id")
    assert len(costs) == len(RUNS)
    assert costs["a1"]["cost_usd"] == pytest.approx(1.5)
    assert costs["a1"]["llm_cost_usd"] == pytest.approx(1.0)
    assert costs["a1"]["credits_used"] == pytest.approx(30.0)
    assert costs["a1"]["row_count"] == 100
    assert costs["a1"]["cost_per_row_usd"] == pytest.approx(0.015)
    assert costs["a3"]["cost_per_row_usd"] is None  # no rows produced
    # c1 reported only a text metric, b2 nothing: unknown cost, never zero
    assert costs["c1"]["cost_usd"] is None
    assert costs["b2"]["cost_usd"] is None


def test_workflow_and_daily_costs_add_up_the_runs(loaded: Warehouse) -> None:
    workflows = by_key(loaded.view("workflow_costs"), "workflow_id")
    enrich = workflows["wf-enrich"]
    assert (enrich["runs"], enrich["runs_with_cost"]) == (5, 3)
    assert enrich["cost_usd"] == pytest.approx(4.25)
    assert enrich["avg_cost_per_run_usd"] == pytest.approx(4.25 / 3)
    assert enrich["credits_used"] == pytest.approx(80.0)
    assert enrich["row_count"] == 300
    assert enrich["cost_per_row_usd"] == pytest.approx(4.0 / 300)
    assert workflows["wf-score"]["cost_per_row_usd"] == pytest.approx(0.004)
    assert workflows["wf-email"]["cost_usd"] is None
    days = {(row["run_date"], row["workflow_id"]): row for row in loaded.view("daily_costs")}
    assert days[(date(2024, 5, 1), "wf-enrich")]["cost_usd"] == pytest.approx(4.0)
    assert days[(date(2024, 5, 2), "wf-enrich")]["cost_usd"] == pytest.approx(0.25)


def test_runs_in_flight_ages_count_up_to_now(loaded: Warehouse) -> None:
    flight = loaded.view("runs_in_flight")
    assert [row["job_id"] for row in flight] == ["a5", "b3"]  # oldest queued first
    running, queued = flight
    assert running["status"] == "running"
    assert queued["status"] == "queued"
    expected = (datetime.now(UTC) - datetime(2024, 5, 3, 9, tzinfo=UTC)).total_seconds()
    assert running["seconds_since_queued"] == pytest.approx(expected, abs=60)
    assert 0 < running["seconds_running"] < running["seconds_since_queued"]
    assert running["seconds_since_update"] > 0
    assert queued["seconds_since_queued"] > 0
    assert queued["seconds_running"] is None


def test_recent_failures_lists_errors_newest_first(loaded: Warehouse) -> None:
    failures = loaded.view("recent_failures")
    assert [(row["job_id"], row["error_message"]) for row in failures] == [
        ("a3", "Enrichment provider timed out"),
        ("b2", "Invalid input column"),
    ]
    assert failures[0]["failed_at"] == datetime(2024, 5, 2, 3, 1, 5, tzinfo=UTC)
    assert failures[0]["run_seconds"] == pytest.approx(60.0)


def test_sync_health_shows_durations_and_an_open_gap(loaded: Warehouse) -> None:
    syncs = loaded.view("sync_health")
    assert [row["sync_id"] for row in syncs] == ["s3", "s2", "s1"]
    assert [row["duration_seconds"] for row in syncs] == pytest.approx([5.0, 90.0, 42.0])
    assert [row["is_latest"] for row in syncs] == [True, False, False]
    # s2 found a gap and the sync after it failed, so the gap is still open
    assert all(row["gap_open"] is True for row in syncs)
    assert syncs[1]["gap_detected"] is True
    assert syncs[0]["error"] == "API answered 500"
    assert [row["details_unread"] for row in syncs] == [None, 0, 2]


def _later_clean_sync(loaded: Warehouse, mode: str) -> None:
    sync = {
        "sync_id": "s4",
        "started_at": "2024-05-03 11:00:00+00",
        "finished_at": "2024-05-03 11:00:30+00",
        "status": "ok",
        "gap_detected": False,
        "mode": mode,
        "cursor_before": "2024-05-03 09:00:00+00",
    }
    _insert(loaded, "sync_runs", [sync])


def test_a_later_clean_incremental_sync_leaves_the_gap_open(loaded: Warehouse) -> None:
    # It read on from its cursor: the stretch the gap left out was not read again.
    _later_clean_sync(loaded, "run")
    assert {row["gap_open"] for row in loaded.view("sync_health")} == {True}


def test_a_later_clean_backfill_closes_the_gap(loaded: Warehouse) -> None:
    _later_clean_sync(loaded, "backfill")
    assert {row["gap_open"] for row in loaded.view("sync_health")} == {False}


def test_block_performance_finds_the_failing_block(loaded: Warehouse) -> None:
    blocks = by_key(loaded.view("block_performance"), "block_name")
    find_email = blocks["find_email"]
    assert (find_email["blocks"], find_email["runs"], find_email["completed"]) == (3, 3, 2)
    assert find_email["failure_rate"] == 0.0
    assert find_email["p50_block_seconds"] == pytest.approx(40.0)  # 60 s and 20 s
    assert find_email["processed_count"] == 190
    assert blocks["score"]["failure_rate"] == pytest.approx(0.5)


def test_applying_twice_leaves_the_same_views_and_numbers(loaded: Warehouse) -> None:
    def contents() -> dict[str, list[str]]:
        # runs_in_flight is left out: its ages move with the clock
        return {
            name: sorted(map(repr, loaded.view(name)))
            for name in view_names()
            if name != "runs_in_flight"
        }

    before = contents()
    again = apply_views(loaded.execute, loaded.dataset, loaded.tables())
    assert again == view_names()
    assert loaded.views() == set(view_names())
    assert contents() == before


def test_views_over_missing_tables_are_skipped(warehouse: Warehouse) -> None:
    # Before blocks, metrics or a sync ledger were ever loaded.
    create_tables(warehouse, {"workflows", "workflow_runs"})
    created = apply_views(warehouse.execute, warehouse.dataset, warehouse.tables())
    assert created == [
        "stg_workflow_runs",
        "int_workflow_latest_run",
        "recent_failures",
        "runs_in_flight",
        "daily_runs",
        "run_durations",
        "workflow_health",
    ]
    assert warehouse.views() == set(created)
    assert len(warehouse.view("workflow_health")) == 3
    # The next sync brings the metrics: their views appear, the others are replaced.
    create_tables(warehouse, {"workflow_runs__metrics"})
    created = apply_views(warehouse.execute, warehouse.dataset, warehouse.tables())
    assert {"stg_run_metrics", "run_costs", "workflow_costs", "daily_costs"} <= set(created)
    assert "sync_health" not in created


def test_dropped_views_free_their_tables_and_apply_brings_them_back(loaded: Warehouse) -> None:
    dropped = drop_views(loaded.execute, loaded.dataset)
    assert dropped == list(reversed(view_names()))
    assert loaded.views() == set()
    assert drop_views(loaded.execute, loaded.dataset) == dropped  # absent views are passed over
    # PostgreSQL refuses this while a view reads the table, as a dlt refresh would find
    loaded.execute(f'drop table "{loaded.dataset}".workflow_runs__blocks')
    created = apply_views(loaded.execute, loaded.dataset, loaded.tables())
    assert created == [name for name in view_names() if name != "block_performance"]


def test_nothing_is_created_in_an_empty_dataset(warehouse: Warehouse) -> None:
    assert apply_views(warehouse.execute, warehouse.dataset, warehouse.tables()) == []
    assert warehouse.views() == set()


@pytest.mark.parametrize(
    "dataset", ["", "1sixtyfour", "sixty-four", "sixtyfour.main", 'a"b', "x; drop table y"]
)
def test_a_bad_dataset_name_is_refused_before_any_sql(dataset: str) -> None:
    statements: list[str] = []
    with pytest.raises(InvalidDatasetName):
        apply_views(statements.append, dataset, ALL_TABLES)
    with pytest.raises(InvalidDatasetName):
        drop_views(statements.append, dataset)
    with pytest.raises(InvalidDatasetName):
        existing_tables_sql(dataset)
    assert statements == []


def test_views_are_created_after_the_views_they_read() -> None:
    names = view_names()
    assert names.index("stg_workflow_runs") < names.index("int_workflow_latest_run")
    assert names.index("int_workflow_latest_run") < names.index("workflow_health")
    assert names.index("stg_run_metrics") < names.index("run_costs")
    assert names.index("run_costs") < names.index("workflow_costs")
    assert names.index("run_costs") < names.index("daily_costs")


def test_dependencies_come_from_the_view_text(tmp_path: Path) -> None:
    (tmp_path / "a_mart.sql").write_text(
        "-- built on {{dataset}}.not_a_dependency\nselect * from {{dataset}}.z_stage;\n"
    )
    (tmp_path / "z_stage.sql").write_text("select * from {{ dataset }}.raw\n")
    statements: list[str] = []
    created = apply_views(statements.append, "analytics", {"raw"}, sql_dir=tmp_path)
    assert created == ["z_stage", "a_mart"]
    assert (
        statements[0] == 'create or replace view "analytics"."z_stage" as\n'
        'select * from "analytics".raw'
    )
    assert statements[1].endswith('select * from "analytics".z_stage')  # `;` dropped
    # A table that happens to share a view's name does not stand in for the view.
    assert apply_views(statements.append, "analytics", {"z_stage"}, sql_dir=tmp_path) == []


def test_views_that_read_each_other_in_a_circle_are_refused(tmp_path: Path) -> None:
    (tmp_path / "first.sql").write_text("select * from {{dataset}}.second")
    (tmp_path / "second.sql").write_text("select * from {{dataset}}.first")
    with pytest.raises(ViewCycle, match="first, second"):
        view_names(tmp_path)


def test_a_missing_sql_folder_is_an_error_not_an_empty_list(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no view files"):
        apply_views(print, "sixtyfour", ALL_TABLES, sql_dir=tmp_path / "absent")
