"""The least a processing run can take on this machine: a diagnostic, not part of `make bench`.

    .venv/bin/python bench/floor.py PAGES [--repeats 3]

PAGES is a folder of saved pages (`bench/run.py --keep` leaves one under
/tmp/sixtyfour-bench-*/pages). Each repeat parses every page with orjson, shapes the runs in
batches of RUNS_PER_BATCH with the pipeline's own `runs_table` and `metrics_table`, and inserts
the Arrow tables into a new DuckDB file (both cores) with a checkpoint. Nothing else of a sync
runs: no dlt, no lock, no change filter, no parquet files, no views. What the bench's
processing part measures can only be slower; when this alone misses a throughput target, no
work on dlt's side of the sync can meet it on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.sixtyfour.metrics import metrics_table, without_markers
from pipelines.sixtyfour.settings import RUNS_PER_BATCH
from pipelines.sixtyfour.shaping import runs_table


def one_repeat(pages: list[bytes], work: Path) -> dict[str, float]:
    """Seconds spent parsing, shaping and inserting, and how many runs went through."""
    parsing = shaping = 0.0
    runs_tables: list[pa.Table] = []
    metric_tables: list[pa.Table] = []
    batch: list[dict[str, Any]] = []
    started = time.perf_counter()

    def shape(runs: list[dict[str, Any]]) -> None:
        nonlocal shaping
        began = time.perf_counter()
        runs_part = runs_table(runs, "a saved page")
        job_ids = runs_part.column("job_id").combine_chunks()
        runs_tables.append(runs_part)
        metric_tables.append(without_markers(metrics_table(runs, job_ids)))
        shaping += time.perf_counter() - began

    for body in pages:
        began = time.perf_counter()
        page = orjson.loads(body)
        parsing += time.perf_counter() - began
        batch.extend(page)
        if len(batch) >= RUNS_PER_BATCH:
            shape(batch)
            batch = []
    if batch:
        shape(batch)
    began = time.perf_counter()
    runs = pa.concat_tables(runs_tables)
    metric_rows = pa.concat_tables(metric_tables)
    with duckdb.connect(str(work / "floor.duckdb")) as db:
        db.execute("set preserve_insertion_order = false")
        db.register("runs_in_memory", runs)
        db.register("metric_rows_in_memory", metric_rows)
        db.execute("create table workflow_runs as select * from runs_in_memory")
        db.execute("create table workflow_runs__metrics as select * from metric_rows_in_memory")
        db.execute("checkpoint")
    inserting = time.perf_counter() - began
    return {
        "parse": parsing,
        "shape": shaping,
        "insert": inserting,
        "total": time.perf_counter() - started,
        "runs": float(len(runs)),
        # The bench counts runs in the warehouse: pages of a backfill overlap.
        "distinct": float(pc.count_distinct(runs.column("job_id")).as_py()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("pages", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    pages = [path.read_bytes() for path in sorted(args.pages.glob("page-*.json"))]
    totals = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="sixtyfour-floor-") as work:
            figures = one_repeat(pages, Path(work))
        totals.append(figures["total"])
        print(
            f"repeat {repeat + 1}: parse {figures['parse']:.2f} s, shape {figures['shape']:.2f} s,"
            f" insert {figures['insert']:.2f} s, total {figures['total']:.2f} s"
            f" ({figures['distinct'] / figures['total']:,.0f} runs/s: {figures['distinct']:,.0f}"
            f" distinct runs of {figures['runs']:,.0f} read)"
        )
    print(f"median total {statistics.median(totals):.2f} s over {len(pages)} pages")


if __name__ == "__main__":
    main()
