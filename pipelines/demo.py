"""The demo: the emulator on loopback, two real syncs over HTTP into a fresh DuckDB, a summary."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pipelines import warehouse
from pipelines.config import WarehouseSettings
from pipelines.runner import DATA_TABLES, SyncRequest, make_pipeline, run_sync
from pipelines.sixtyfour.errors import ConfigError

DEMO_KEY = "demo-key"
# Left in the demo's folder, so a later demo knows what in it is its own to replace.
DEMO_MARKER = ".sixtyfour-sync-demo"
DEMO_DATABASE = "sixtyfour-sync.duckdb"


def run_demo(directory: Path, runs: int, workflows: int, seed: int) -> int:
    """Run the demo and print its summary; returns the exit code (3 if a sync saw a gap)."""
    # The demo imports the emulator; the sync itself never does.
    from pipelines.emulator import EmulatorServer, World, WorldConfig

    directory = directory.expanduser().resolve()
    _clear_demo_folder(directory)
    # The demo's state and file live apart from a real pipeline's.
    os.environ["DLT_DATA_DIR"] = str(directory / "dlt")
    target = WarehouseSettings(duckdb_path=directory / DEMO_DATABASE)

    world = World(WorldConfig(seed=seed, runs=runs, workflows=workflows))
    with EmulatorServer(world, api_key=DEMO_KEY).start() as server:
        print(f"emulator: {runs} runs of {workflows} workflows at {server.base_url}")
        source_args = {"api_key": DEMO_KEY, "base_url": server.base_url}
        first = run_sync(target, SyncRequest(source_args=source_args))
        print(
            f"first sync:  {first.runs_loaded} runs loaded with {first.api_requests} requests "
            f"({first.partitions} partitions, {first.detail_requests} block details)"
        )
        world.advance(15 * 60, new_runs=40)
        second = run_sync(target, SyncRequest(source_args=source_args))
        print(
            f"second sync, 15 emulated minutes later: {second.runs_loaded} new or changed runs "
            f"with {second.api_requests} requests"
        )
    _print_summary(target)
    for gap in first.gaps + second.gaps:
        print(f"warning: gap: {gap.describe()}")
    return 3 if first.gaps or second.gaps else 0


def _clear_demo_folder(directory: Path) -> None:
    """Start each demo afresh, removing only what an earlier demo left in `directory`.

    A folder the demo did not make, holding anything, is refused rather than emptied: it may
    be a real warehouse's (the demo's file has the default warehouse file's name).

    Raises:
        ConfigError: `directory` is a file, or a folder with files no demo left.
    """
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"the demo's --directory {directory} is a file: choose a folder")
    if directory.is_dir() and not (directory / DEMO_MARKER).exists() and any(directory.iterdir()):
        raise ConfigError(
            f"the demo's --directory {directory} holds files an earlier demo did not leave: "
            "choose an empty or new folder"
        )
    directory.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(directory / "dlt", ignore_errors=True)
    for name in (DEMO_DATABASE, DEMO_DATABASE + ".wal"):
        (directory / name).unlink(missing_ok=True)
    (directory / DEMO_MARKER).write_text("`sixtyfour-sync demo` replaces what it left here\n")


def _print_summary(target: WarehouseSettings) -> None:
    with make_pipeline(target).sql_client() as client:
        _print_tables(client, target)


def _print_tables(client: warehouse.Client, target: WarehouseSettings) -> None:
    by_status = warehouse.query(
        client,
        "select status, count(*) as runs from {dataset}.workflow_runs "
        "group by status order by runs desc",
    )
    print("\nruns by status: " + ", ".join(f"{r['status']} {r['runs']}" for r in by_status))
    counts = warehouse.table_counts(client, DATA_TABLES)
    print("tables (rows):")
    for table, count in counts.items():
        print(f"  sixtyfour.{table:<24} {count:>8}")
    print(f"\nDuckDB file: {target.duckdb_path}")
    print("try:")
    print(
        f"  .venv/bin/python -c \"import duckdb; duckdb.connect('{target.duckdb_path}', "
        "read_only=True).sql('select * from sixtyfour.workflow_health').show()\""
    )
