"""PostgreSQL as the warehouse: syncs, views, full refresh and the CLI against a real server.

Each test loads into its own schema of the `test` database and drops it (and the
`<schema>_staging` schema dlt creates for merges) at the end. Without a reachable server the
tests are skipped; set SIXTYFOUR_TEST_POSTGRES_URL to use another one.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import psycopg2
import pytest

from pipelines.config import WarehouseSettings
from pipelines.runner import SyncRequest, make_pipeline, repair_reloaded_rows, run_sync
from pipelines.sixtyfour.ledger import SyncReport
from pipelines.views import view_names
from tests.conftest import POSTGRES_URL, Harness, postgres_address, run_cli
from tests.test_sync_core import assert_rows_match_api, flatten_metrics

# Not UTC on purpose: what the tests read back must be the same instants whatever the session.
SESSION_TIME_ZONE = "America/Los_Angeles"


@dataclass
class PostgresWarehouse:
    """One schema of the test database that a test syncs into and reads back."""

    harness: Harness
    dataset: str
    connection: Any

    def sync(self, **overrides: Any) -> SyncReport:
        """One sync as the CLI runs it, with the destination resolved from the environment."""
        target = WarehouseSettings.resolve()
        assert (target.destination, target.dataset_name) == ("postgres", self.dataset)
        request_fields = {
            k: overrides.pop(k) for k in ("backfill", "full_refresh", "details") if k in overrides
        }
        request = SyncRequest(source_args=self.harness.source_args(**overrides), **request_fields)
        return run_sync(target, request)

    def dicts(self, sql: str) -> list[dict[str, Any]]:
        """Rows of `sql` as dicts; `{dataset}` in it names the test's schema."""
        with self.connection.cursor() as cursor:
            cursor.execute(sql.replace("{dataset}", f'"{self.dataset}"'))
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row.values()) for row in self.dicts(sql)]

    def scalar(self, sql: str) -> Any:
        ((value,),) = self.rows(sql)
        return value

    def relations(self, kind: str) -> set[str]:
        """Names of the schema's relations of one kind: 'BASE TABLE' or 'VIEW'."""
        return {
            name
            for (name,) in self.rows(
                "select table_name from information_schema.tables "
                f"where table_schema = '{self.dataset}' and table_type = '{kind}'"
            )
        }


def _connect() -> Any:
    try:
        connection = psycopg2.connect(
            POSTGRES_URL, connect_timeout=3, options=f"-c TimeZone={SESSION_TIME_ZONE}"
        )
    except psycopg2.OperationalError as error:
        reason = str(error).strip().splitlines()[0]
        pytest.skip(f"PostgreSQL is not reachable at {postgres_address()}: {reason}")
    connection.autocommit = True
    return connection


@pytest.fixture
def postgres(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> Iterator[PostgresWarehouse]:
    """A fresh schema, and the environment a cron job on PostgreSQL would have."""
    connection = _connect()
    dataset = f"sixtyfour_test_{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", POSTGRES_URL)
    monkeypatch.setenv("SIXTYFOUR_SYNC__DESTINATION", "postgres")
    monkeypatch.setenv("SIXTYFOUR_SYNC__DATASET_NAME", dataset)
    try:
        yield PostgresWarehouse(harness, dataset, connection)
    finally:
        with connection.cursor() as cursor:
            for schema in (dataset, f"{dataset}_staging"):
                cursor.execute(f'drop schema if exists "{schema}" cascade')
        connection.close()


def assert_postgres_matches_api(postgres: PostgresWarehouse) -> None:
    """workflow_runs and its metrics hold exactly what the emulated API serves, once each."""
    assert_rows_match_api(
        postgres.harness.world.runs(),
        postgres.dicts("select * from {dataset}.workflow_runs"),
        postgres.rows(
            "select job_id, metric, value, value_text from {dataset}.workflow_runs__metrics"
        ),
    )


def test_first_sync_loads_exactly_the_api_runs(postgres: PostgresWarehouse) -> None:
    report = postgres.sync()
    assert report.status == "ok"
    assert report.runs_loaded == len(postgres.harness.world.runs())
    assert_postgres_matches_api(postgres)
    workflows = postgres.scalar("select count(*) from {dataset}.workflows")
    assert workflows == len(postgres.harness.world.workflows())
    ledger = postgres.dicts("select status, runs_loaded from {dataset}.sync_runs")
    assert ledger == [{"status": "ok", "runs_loaded": report.runs_loaded}]
    # Stamped after the load, on the connection held open around it.
    finished = postgres.scalar("select finished_at from {dataset}.sync_runs")
    assert finished >= postgres.scalar("select max(inserted_at) from {dataset}._dlt_loads")


def test_next_sync_brings_changes_without_duplicates_and_replaces_metric_rows(
    postgres: PostgresWarehouse,
) -> None:
    world = postgres.harness.world
    postgres.sync()
    in_flight_before = set(world.in_flight())
    assert in_flight_before, "the emulated history should have runs in flight"
    job_id = sorted(in_flight_before)[0]
    metrics_before = {
        metric
        for (metric,) in postgres.rows(
            f"select metric from {{dataset}}.workflow_runs__metrics where job_id = '{job_id}'"
        )
    }
    world.set_status(job_id, "completed")
    world.advance(2 * 3600, new_runs=60)

    report = postgres.sync()

    assert report.status == "ok"
    assert report.runs_loaded >= 60
    assert_postgres_matches_api(postgres)
    finished = in_flight_before - set(world.in_flight())
    assert job_id in finished
    statuses = dict(postgres.rows("select job_id, status from {dataset}.workflow_runs"))
    assert all(statuses[job] in ("completed", "failed", "cancelled") for job in finished)
    metrics_after = {
        metric
        for (metric,) in postgres.rows(
            f"select metric from {{dataset}}.workflow_runs__metrics where job_id = '{job_id}'"
        )
    }
    # the finished run's metric set is the API's new one, not the old one plus the new
    assert metrics_after == set(flatten_metrics(world.payload(job_id)["metrics"]))
    assert metrics_after != metrics_before
    assert postgres.scalar("select count(*) from {dataset}.sync_runs") == 2


def test_nul_characters_are_stored_as_replacement_characters(postgres: PostgresWarehouse) -> None:
    # PostgreSQL refuses a NUL in text; the load holding one would fail every later sync.
    harness = postgres.harness
    assert postgres.sync(details=False).status == "ok"
    job_id = next(run["job_id"] for run in harness.world.runs() if run["metrics"])
    metrics = {**harness.world.payload(job_id)["metrics"], "rows\x00in": 1}
    harness.world.set_extra_field("error_message", "bad byte \x00 here", [job_id], touch=True)
    harness.world.set_extra_field("metrics", metrics, [job_id], touch=True)
    assert postgres.sync(details=False).status == "ok"
    assert postgres.sync(details=False).status == "ok"
    stored = postgres.scalar(
        f"select error_message from {{dataset}}.workflow_runs where job_id = '{job_id}'"
    )
    assert stored == "bad byte \ufffd here"
    names = postgres.rows(
        f"select metric from {{dataset}}.workflow_runs__metrics where job_id = '{job_id}'"
    )
    assert ("rows\ufffdin",) in names


def test_views_exist_in_the_schema_and_report_the_loaded_runs(
    postgres: PostgresWarehouse,
) -> None:
    world = postgres.harness.world
    postgres.sync()
    postgres.sync()  # the second sync reads block details, so every view has its tables
    assert postgres.relations("VIEW") == set(view_names())

    runs = world.runs()
    health = postgres.dicts("select * from {dataset}.workflow_health")
    assert len(health) == len({run["workflow_id"] for run in runs})
    assert sum(row["runs"] for row in health) == len(runs)
    assert sum(row["failed"] for row in health) == sum(run["status"] == "failed" for run in runs)
    assert all(0 <= row["failure_rate"] <= 1 for row in health if row["failure_rate"] is not None)

    # days are UTC days although the session's time zone is Los Angeles
    per_day = Counter(run["queued_at"].astimezone(UTC).date() for run in runs)
    daily = postgres.rows("select run_date, sum(runs) from {dataset}.daily_runs group by run_date")
    assert {day: int(total) for day, total in daily} == dict(per_day)

    in_flight = postgres.scalar("select count(*) from {dataset}.runs_in_flight")
    assert in_flight == len(world.in_flight())
    syncs = postgres.dicts("select status, is_latest from {dataset}.sync_health")
    assert [row["status"] for row in syncs] == ["ok", "ok"]
    assert [row["is_latest"] for row in syncs] == [True, False]
    assert postgres.scalar("select count(*) from {dataset}.block_performance") > 0


def test_full_refresh_reloads_although_views_read_the_tables(
    postgres: PostgresWarehouse,
) -> None:
    world = postgres.harness.world
    postgres.sync()
    assert "workflow_health" in postgres.relations("VIEW")
    world.advance(3600, new_runs=40)

    report = postgres.sync(full_refresh=True)

    assert report.status == "ok"
    assert report.runs_loaded == len(world.runs())
    assert_postgres_matches_api(postgres)
    assert postgres.relations("VIEW") >= {"workflow_health", "daily_runs", "sync_health"}
    workflows_with_runs = {run["workflow_id"] for run in world.runs()}
    assert postgres.scalar("select count(*) from {dataset}.workflow_health") == len(
        workflows_with_runs
    )
    # dlt's drop_sources refresh drops the ledger too: only the refreshing sync is recorded
    assert postgres.rows("select status from {dataset}.sync_runs") == [("ok",)]


def test_cli_run_on_postgres_exits_0_and_records_the_sync(postgres: PostgresWarehouse) -> None:
    configured = "duckdb"  # --destination wins over the configured destination
    result = run_cli(
        postgres.harness,
        *("run", "--destination", "postgres", "--no-details"),
        SIXTYFOUR_SYNC__DESTINATION=configured,
    )
    assert result.returncode == 0, result.stderr
    assert not postgres.harness.duckdb_path.exists()
    assert result.stdout.startswith("run ok:"), result.stdout
    ledger = postgres.dicts("select mode, status, runs_loaded, error from {dataset}.sync_runs")
    runs = len(postgres.harness.world.runs())
    assert ledger == [{"mode": "run", "status": "ok", "runs_loaded": runs, "error": None}]
    assert postgres.scalar("select count(*) from {dataset}.workflow_runs") == runs

    status = run_cli(
        postgres.harness,
        *("status", "--destination", "postgres"),
        SIXTYFOUR_SYNC__DESTINATION=configured,
    )
    assert status.returncode == 0, status.stderr
    assert "last syncs:" in status.stdout


def test_rows_a_resumed_load_repeated_are_kept_once(postgres: PostgresWarehouse) -> None:
    postgres.sync(details=False)
    # What a load killed between a file's rows landing and dlt recording it leaves after
    # the file is loaded again: the same rows twice.
    with postgres.connection.cursor() as cursor:
        for table in ("workflow_runs", "workflow_runs__metrics", "sync_runs"):
            qualified = f'"{postgres.dataset}".{table}'
            cursor.execute(f"insert into {qualified} select * from {qualified} limit 7")
    postgres.connection.commit()
    repair_reloaded_rows(make_pipeline(WarehouseSettings.resolve()), WarehouseSettings.resolve())
    assert_postgres_matches_api(postgres)
    (repeated,) = postgres.dicts(
        "select count(*) as n from (select job_id, metric from {dataset}.workflow_runs__metrics"
        " group by job_id, metric having count(*) > 1) as r"
    )
    assert repeated["n"] == 0
    (syncs,) = postgres.dicts("select count(*) as n from {dataset}.sync_runs")
    assert syncs["n"] == 1


def test_a_duckdb_file_and_postgresql_sharing_the_state_folder_each_keep_their_cursor(
    postgres: PostgresWarehouse,
) -> None:
    # The default DLT_DATA_DIR is one per user: a DuckDB file tried out and a PostgreSQL
    # warehouse synced from the same account share it.
    world = postgres.harness.world
    postgres.sync(details=False)
    world.advance(600, new_runs=10)  # not yet in PostgreSQL
    postgres.harness.sync(details=False)  # into the harness's DuckDB file
    world.advance(600, new_runs=10)
    report = postgres.sync(details=False)
    assert report.runs_loaded >= 20  # from PostgreSQL's own cursor on
    assert_postgres_matches_api(postgres)


@pytest.mark.parametrize(
    ("credentials", "code", "said"),
    [
        (
            "postgresql://no_such_role:unused@{address}/test",
            2,
            'refused the connection: role "no_such_role" does not exist: check '
            "DESTINATION__POSTGRES__CREDENTIALS",
        ),
        (
            "postgresql://postgres:unused@127.0.0.1:1/test",
            8,
            "could not be reached: Connection refused: check that its server runs",
        ),
        ("not a url", 2, "a URL such as postgresql://user:password@host:5432/database"),
    ],
)
def test_credentials_that_cannot_connect_exit_with_one_line_saying_what_to_check(
    postgres: PostgresWarehouse, credentials: str, code: int, said: str
) -> None:
    url = credentials.format(address=postgres_address())
    result = run_cli(postgres.harness, "run", DESTINATION__POSTGRES__CREDENTIALS=url)
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert said in result.stderr and "unused" not in result.stderr
    assert postgres.harness.server.request_count == 0


def test_status_of_a_server_not_reached_exits_8_saying_what_to_check(
    postgres: PostgresWarehouse,
) -> None:
    url = "postgresql://postgres:unused@127.0.0.1:1/test"
    result = run_cli(postgres.harness, "status", DESTINATION__POSTGRES__CREDENTIALS=url)
    assert result.returncode == 8, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "could not be reached" in result.stderr
