"""One side of a comparison, in its own process: pages to rows in a fresh DuckDB file.

    python bench/processing.py ours PAGES_DIR WORK_DIR      # in-memory pages, the real source
    python bench/processing.py baseline PAGES_DIR WORK_DIR  # in-memory pages, plain dlt
    python bench/processing.py baseline-http BASE_URL WORK_DIR  # plain dlt reading the API
    python bench/processing.py fetch BASE_URL PAGES_DIR     # save a backfill's pages, time the API

Prints one JSON line: the seconds from the first page to the last row committed (imports and,
for the in-memory modes, reading the page files are before the clock starts), the runs in
the warehouse and the pages read. The API key comes from SIXTYFOUR_BENCH_API_KEY.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import dlt
import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pages as api_pages

BASELINE_DATASET = "baseline"


def baseline_pipeline(work: Path) -> Any:
    return dlt.pipeline(
        pipeline_name="baseline",
        destination=dlt.destinations.duckdb(str(work / "plain.duckdb")),
        dataset_name=BASELINE_DATASET,
    )


@dlt.resource(name="workflow_runs", primary_key="job_id", write_disposition="merge")
def baseline_runs(parsed_pages: Iterable[list[dict[str, Any]]]) -> Iterator[Any]:
    """The plain dlt way: whole parsed pages of nested dicts, normalised by dlt."""
    yield from parsed_pages


def run_baseline(
    work: Path, parsed_pages: Iterable[list[dict[str, Any]]]
) -> tuple[int, dict[str, float]]:
    pipeline = baseline_pipeline(work)
    pipeline.run(baseline_runs(parsed_pages), loader_file_format="parquet")
    return count_runs(work / "plain.duckdb", BASELINE_DATASET), step_seconds(pipeline)


def step_seconds(pipeline: Any) -> dict[str, float]:
    """Seconds of each dlt step of the pipeline's last run, from its trace."""
    steps: dict[str, float] = {}
    for step in pipeline.last_trace.steps:
        if step.step in ("extract", "normalize", "load") and step.finished_at:
            steps[step.step] = (step.finished_at - step.started_at).total_seconds()
    return steps


def count_runs(database: Path, dataset: str) -> int:
    with duckdb.connect(str(database), read_only=True) as db:
        row = db.sql(f"select count(distinct job_id) from {dataset}.workflow_runs").fetchone()
    return int(row[0]) if row else 0


def baseline_from_bytes(folder: Path, work: Path) -> dict[str, Any]:
    pages, _ = api_pages.load(folder)
    started = time.perf_counter()
    runs, steps = run_baseline(work, (json.loads(page.body) for page in pages))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "runs": runs, "pages": len(pages), "steps": steps}


def baseline_over_http(base_url: str, work: Path) -> dict[str, Any]:
    read = [0]

    def parsed_pages() -> Iterator[list[dict[str, Any]]]:
        with api_pages.client(base_url, os.environ["SIXTYFOUR_BENCH_API_KEY"]) as http:
            workflows = json.loads(api_pages.get_workflows(http))
            for _, runs in api_pages.partition_pages(http, workflows, json.loads):
                read[0] += 1
                yield runs

    started = time.perf_counter()
    runs, steps = run_baseline(work, parsed_pages())
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "runs": runs, "pages": read[0], "steps": steps}


def ours_from_bytes(folder: Path, work: Path) -> dict[str, Any]:
    """The real sync (`run_sync`, as `backfill --no-details` runs it); only the socket is
    replaced by memory. The clock covers all of it: lock, warehouse reads, the dlt steps, views.
    """
    from pipelines.config import WarehouseSettings, use_project_settings
    from pipelines.runner import SyncRequest, make_pipeline, run_sync
    from pipelines.sixtyfour import settings
    from pipelines.sixtyfour.client import SixtyfourClient

    use_project_settings()  # the same .dlt/config.toml the command line reads
    pages, workflows_body = api_pages.load(folder)
    bodies = {(page.status, page.workflow_id): page.body for page in pages}

    def answer_from_memory(self: SixtyfourClient, path: str, params: dict[str, str | int]) -> bytes:
        # Everything above the socket is the client's own: parsing, checks, request stats.
        self.stats.count()
        if path == settings.WORKFLOWS_PATH:
            return workflows_body
        status, workflow_id = params.get("status"), params.get("workflow_id")
        return bodies[(None if status is None else str(status), _text(workflow_id))]

    SixtyfourClient._get = answer_from_memory  # type: ignore[method-assign]
    warehouse = WarehouseSettings(duckdb_path=work / "warehouse.duckdb")
    request = SyncRequest(
        backfill=True,
        details=False,
        source_args={
            "api_key": "in-memory",
            "base_url": "http://in-memory.invalid",
            "rate_limit_per_minute": 0,
        },
    )
    started = time.perf_counter()
    run_sync(warehouse, request)
    seconds = time.perf_counter() - started
    runs = count_runs(work / "warehouse.duckdb", settings.DATASET_NAME)
    steps = step_seconds(make_pipeline(warehouse))  # its trace, kept in the pipeline folder
    return {"seconds": seconds, "runs": runs, "pages": len(pages), "steps": steps}


def fetch(base_url: str, folder: Path) -> dict[str, Any]:
    """Save a backfill's pages; then time the same requests alone (the API's share)."""
    with api_pages.client(base_url, os.environ["SIXTYFOUR_BENCH_API_KEY"]) as http:
        pages, workflows_body = api_pages.backfill_pages(http, json.loads)
        started = time.perf_counter()
        api_pages.get_workflows(http)
        for page in pages:
            api_pages.get_runs(http, page.status, page.workflow_id)
        serving = time.perf_counter() - started
    api_pages.save(pages, workflows_body, folder)
    return {
        "serve_seconds": serving,
        "pages": len(pages),
        "mb": sum(len(page.body) for page in pages) / 2**20,
        "runs": sum(len(json.loads(page.body)) for page in pages),
    }


def _text(value: str | int | None) -> str | None:
    return None if value is None else str(value)


def main() -> None:
    mode, where, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    work.mkdir(parents=True, exist_ok=True)
    if mode == "ours":
        result = ours_from_bytes(Path(where), work)
    elif mode == "baseline":
        result = baseline_from_bytes(Path(where), work)
    elif mode == "baseline-http":
        result = baseline_over_http(where, work)
    elif mode == "fetch":
        result = fetch(where, work)
    else:
        raise SystemExit(f"unknown mode {mode!r}: ours, baseline, baseline-http or fetch")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
