"""Where a backfill's time and memory go, dlt step by dlt step (a diagnostic, not the bench).

    .venv/bin/python bench/profile_sync.py [--workflows 600 --runs 200000] [--cprofile OUT]

Starts the emulator in its own process, then runs the same backfill as `sixtyfour-sync
backfill --no-details` in this process, one dlt step at a time (extract, normalize, load),
printing each step's seconds, its CPU time (all threads) and the peak RSS reached during it.
With --cprofile, writes a cProfile of the whole sync to OUT (read it with `python -m pstats
OUT`).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import API_KEY, Emulator

from pipelines.entry import ARROW_POOL_SETTING


class RssSampler:
    """Samples this process's RSS every few milliseconds; peak per phase."""

    def __init__(self, every: float = 0.02) -> None:
        self._process = psutil.Process()
        self._every = every
        self._stop = threading.Event()
        self._peak = 0
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._process.memory_info().rss)
            time.sleep(self._every)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def phase_peak(self) -> int:
        """The peak since the last call (or start), and restart the count from now."""
        peak = max(self._peak, self._process.memory_info().rss)
        self._peak = 0
        return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workflows", type=int, default=600)
    parser.add_argument("--runs", type=int, default=200_000)
    parser.add_argument("--in-flight-share", type=float, default=0.001)
    parser.add_argument("--cprofile", type=Path, default=None)
    parser.add_argument("--duckdb-threads", type=int, default=None, help="0: one per core")
    parser.add_argument("--duckdb-memory-limit", default=None, help='e.g. "128MB"')
    args = parser.parse_args()

    # As the command line's entry point does, before anything loads Arrow.
    os.environ.setdefault(ARROW_POOL_SETTING, "system")
    work = Path(tempfile.mkdtemp(prefix="sixtyfour-profile-"))
    os.environ["DLT_DATA_DIR"] = str(work / "dlt")
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    with Emulator(args.workflows, args.runs, args.in_flight_share) as emulator:
        from pipelines.config import WarehouseSettings, use_project_settings
        from pipelines.memory import lean_cycle_collection, release_freed_memory
        from pipelines.runner import DATA_TABLES, load_packages, make_pipeline
        from pipelines.sixtyfour import Extraction, sixtyfour

        use_project_settings()
        warehouse = WarehouseSettings(duckdb_path=work / "warehouse.duckdb")
        if args.duckdb_threads is not None:
            warehouse.duckdb_threads = args.duckdb_threads
        if args.duckdb_memory_limit is not None:
            warehouse.duckdb_memory_limit = args.duckdb_memory_limit
        pipeline = make_pipeline(warehouse)
        # As the runner decides for a fresh warehouse: every table is appended to.
        extraction = Extraction()
        extraction.append_tables = frozenset(DATA_TABLES)
        source = sixtyfour(
            extraction=extraction,
            api_key=API_KEY,
            base_url=emulator.base_url,
            backfill=True,
            details=False,
            rate_limit_per_minute=0,
        )
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("extract", lambda: pipeline.extract(source)),
            ("release", release_freed_memory),  # as the runner does before normalize
            ("normalize", pipeline.normalize),
            ("load", lambda: load_packages(pipeline, warehouse, appends_only=True)),
        ]
        profiler = cProfile.Profile() if args.cprofile else None
        with RssSampler() as sampler, lean_cycle_collection():  # as run_sync does
            print(f"before: rss {sampler.phase_peak() / 2**20:.0f} MB")
            for name, step in steps:
                started, cpu = time.perf_counter(), time.process_time()
                if profiler:
                    profiler.enable()
                step()
                if profiler:
                    profiler.disable()
                seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
                peak = sampler.phase_peak() / 2**20
                print(f"{name:9}: {seconds:6.2f} s, cpu {cpu:6.2f} s, peak rss {peak:.0f} MB")
        if profiler and args.cprofile:
            profiler.dump_stats(str(args.cprofile))
            print(f"cProfile written to {args.cprofile}")


if __name__ == "__main__":
    main()
