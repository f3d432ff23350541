"""Shared fixtures: the emulator over real HTTP, a DuckDB file and dlt state per test."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb
import pytest

from pipelines.config import WarehouseSettings
from pipelines.emulator import EmulatorServer, World, WorldConfig
from pipelines.runner import SyncRequest, run_sync
from pipelines.sixtyfour.ledger import SyncReport

API_KEY = "test-key-7f3c"
# The PostgreSQL server the destination and view tests use (a URL, as dlt and libpq read it);
# dlt wants a password in it even when the server trusts local connections.
POSTGRES_URL = os.environ.get(
    "SIXTYFOUR_TEST_POSTGRES_URL", "postgresql://postgres:unused@127.0.0.1:5432/test"
)


def postgres_address() -> str:
    """Where the PostgreSQL test server is, without the password its URL may carry."""
    where = urlsplit(POSTGRES_URL)
    return f"{where.hostname}:{where.port}"


@pytest.fixture(autouse=True)
def _isolated_dlt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own dlt state folder and no stray configuration."""
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    for name in ("SOURCES__SIXTYFOUR__API_KEY", "SOURCES__SIXTYFOUR__BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@dataclass
class Harness:
    """An emulated API and a warehouse to sync it into."""

    world: World
    server: EmulatorServer
    duckdb_path: Path

    @property
    def target(self) -> WarehouseSettings:
        return WarehouseSettings(duckdb_path=self.duckdb_path, busy_timeout_seconds=2)

    def source_args(self, **overrides: Any) -> dict[str, Any]:
        args: dict[str, Any] = {
            "api_key": API_KEY,
            "base_url": self.server.base_url,
            "rate_limit_per_minute": 0,
            "max_retry_wait_seconds": 0.2,
        }
        args.update(overrides)
        return args

    def sync(self, **overrides: Any) -> SyncReport:
        """One sync as the CLI runs it (lock, read-back, load, views, ledger)."""
        request_fields = {
            k: overrides.pop(k) for k in ("backfill", "full_refresh", "details") if k in overrides
        }
        request = SyncRequest(source_args=self.source_args(**overrides), **request_fields)
        return run_sync(self.target, request)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.duckdb_path), read_only=True) as db:
            return db.sql(sql).fetchall()

    def duplicate_runs(self) -> int:
        """Rows of workflow_runs beyond one per job_id."""
        (extra,) = self.rows(
            "select count(*) - count(distinct job_id) from sixtyfour.workflow_runs"
        )[0]
        return int(extra)

    def repeated_keys(self, table: str, key: str) -> int:
        """Keys (`key`: its columns, comma-separated) held by more than one row of `table`."""
        (repeated,) = self.rows(
            f"select count(*) from (select {key} from sixtyfour.{table} "
            "group by all having count(*) > 1)"
        )[0]
        return int(repeated)

    def dicts(self, sql: str) -> list[dict[str, Any]]:
        with duckdb.connect(str(self.duckdb_path), read_only=True) as db:
            relation = db.sql(sql)
            names = relation.columns
            return [dict(zip(names, row, strict=True)) for row in relation.fetchall()]


def make_harness(tmp_path: Path, **world_args: Any) -> Iterator[Harness]:
    config = WorldConfig(**{"runs": 1200, "workflows": 6, **world_args})
    world = World(config)
    server = EmulatorServer(world, api_key=API_KEY, rate_limit_per_minute=None).start()
    try:
        yield Harness(world, server, tmp_path / "warehouse.duckdb")
    finally:
        server.stop()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    yield from make_harness(tmp_path)


def cli_env(harness: Harness, **extra: str) -> dict[str, str]:
    """The environment a cron job would give the CLI, pointed at the emulator."""
    import os

    env = dict(os.environ)
    env.update(
        {
            "SOURCES__SIXTYFOUR__API_KEY": API_KEY,
            "SOURCES__SIXTYFOUR__BASE_URL": harness.server.base_url,
            "SOURCES__SIXTYFOUR__RATE_LIMIT_PER_MINUTE": "0",
            "SOURCES__SIXTYFOUR__MAX_RETRY_WAIT_SECONDS": "0.2",
            "DESTINATION__DUCKDB__CREDENTIALS": str(harness.duckdb_path),
            "SIXTYFOUR_SYNC__BUSY_TIMEOUT_SECONDS": "2",
        }
    )
    env.update(extra)
    return env


def run_cli(
    harness: Harness, *args: str, timeout: float = 180, **env: str
) -> subprocess.CompletedProcess[str]:
    """`sixtyfour-sync ARGS` in a subprocess, as cron runs it."""
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(harness, **env),
        cwd=harness.duckdb_path.parent,
    )
