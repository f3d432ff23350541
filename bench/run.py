"""The sixtyfour-sync benchmark: `make bench` (or `.venv/bin/python bench/run.py`).

Runs every part in one go against the project's emulator (in its own process), prints a
table with MET / NOT MET per target, and writes bench/results.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    API_KEY,
    BENCH_DIR,
    ChildRun,
    Emulator,
    own_rss_mb,
    run_child,
    sync_env,
)

PYTHON = sys.executable
RESULTS_PATH = BENCH_DIR / "results.json"


@dataclass(frozen=True)
class History:
    """An emulated history: its size and the share of its runs still in flight."""

    workflows: int
    runs: int
    # The emulator's default (3 %) suits its small demo worlds; in a 200,000-run history it
    # would put 6,000 runs in flight at once, which no real organisation of that size has.
    in_flight_share: float = 0.001


# 600 workflows rather than 400: the emulator spreads runs unevenly (0.4x to 1.6x the mean),
# so with 500 runs per workflow some workflows hold more than 500 completed runs, which no
# filter can reach (a gap, exit 3). At ~333 per workflow every status filter stays under 500.
LARGE = History(workflows=600, runs=200_000)
SMALL = History(workflows=150, runs=50_000)
# Paced: 153 requests against a budget of 120 per minute, so the limit binds exactly once.
PACED = History(workflows=150, runs=20_000)
PACED_LIMIT = 120
# The API allows 500/min and the client defaults to 480: the same 4 % margin, scaled down.
PACED_SERVER_LIMIT = 125

# Targets.
END_TO_END_RATIO = 4.0
PROCESSING_RATIO = 6.0
PROCESSING_RUNS_PER_SECOND = 60_000
PEAK_RSS_MB = 300.0
RSS_GROWTH_RATIO = 1.5  # peak RSS at 4x the history, at most this many times the small one's
NOOP_REQUESTS = 2
NOOP_IMPORT_RATIO = 2.0
PACED_SLACK_SECONDS = 10.0
# Repeats of one timed figure further apart than this (slowest / fastest - 1) are reported.
UNEVEN_REPEATS = 0.25


class Report:
    """Prints rows as they come and keeps every figure for results.json."""

    def __init__(self) -> None:
        self.results: dict[str, Any] = {}
        self.targets: list[dict[str, Any]] = []
        self.spreads: dict[str, float] = {}  # figure -> slowest repeat / fastest - 1

    def repeats(self, figure: str, seconds: list[float]) -> str:
        """The repeats of a timed figure, as printed; their spread is kept for the summary."""
        if len(seconds) > 1 and min(seconds) > 0:
            self.spreads[figure] = max(seconds) / min(seconds) - 1
        return "each: " + ", ".join(f"{s:.2f}" for s in seconds)

    def section(self, title: str) -> None:
        print(f"\n{title}\n{'-' * len(title)}", flush=True)

    def row(self, label: str, value: str, note: str = "") -> None:
        print(f"  {label:<46} {value:>18}  {note}".rstrip(), flush=True)

    def target(self, name: str, figure: str, met: bool) -> None:
        self.targets.append({"target": name, "figure": figure, "met": met})
        print(f"  {'MET' if met else 'NOT MET':>7}  {name}: {figure}", flush=True)

    def failed(self, part: str, error: BaseException) -> None:
        self.results.setdefault("errors", {})[part] = f"{type(error).__name__}: {error}"
        self.targets.append({"target": f"{part} ran", "figure": str(error)[:200], "met": False})
        print(f"  FAILED  {part}: {type(error).__name__}: {error}", flush=True)


class ChildFailed(RuntimeError):
    """A child process ended with an exit code the part does not accept."""

    def __init__(self, what: str, child: ChildRun) -> None:
        tail = (child.stderr.strip().splitlines() or [""])[-1][:300]
        super().__init__(f"{what} exited {child.returncode}: {tail}")


def checked(what: str, child: ChildRun, accept: tuple[int, ...] = (0,)) -> ChildRun:
    if child.returncode not in accept:
        raise ChildFailed(what, child)
    return child


def json_line(child: ChildRun) -> dict[str, Any]:
    """The last line of a child's stdout, as JSON."""
    return dict(json.loads(child.stdout.strip().splitlines()[-1]))


def inspect(database: Path) -> dict[str, Any]:
    child = run_child(
        [PYTHON, str(BENCH_DIR / "inspect_warehouse.py"), str(database)],
        dict(os.environ),
        database.parent,
    )
    return json_line(checked("inspect_warehouse.py", child))


def code_version() -> dict[str, Any]:
    """The commit measured, and the files under pipelines/ that differ from it."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], capture_output=True, text=True, cwd=BENCH_DIR.parent, timeout=10
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [line[3:] for line in git("status", "--porcelain", "pipelines").splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD").strip() or "unknown", "changed": changed}


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def thousands(value: float) -> str:
    return f"{value:,.0f}"


# -- the parts ------------------------------------------------------------------------------


def backfill_once(emulator: Emulator, folder: Path) -> dict[str, Any]:
    """`sixtyfour-sync backfill --no-details` into a fresh DuckDB file, as a process."""
    folder.mkdir(parents=True)
    database = folder / "warehouse.duckdb"
    env = sync_env(emulator.base_url, database, folder / "dlt")
    before = emulator.request_count()
    child = run_child([PYTHON, "-m", "pipelines", "backfill", "--no-details"], env, folder)
    requests = emulator.request_count() - before
    checked("backfill", child, accept=(0, 3))
    warehouse = inspect(database)
    ledger = warehouse["ledger"][-1]
    return {
        "exit_code": child.returncode,
        "wall_seconds": child.wall_seconds,
        "cpu_seconds": child.cpu_seconds,
        "peak_rss_mb": child.peak_rss_mb,
        "sampled_hwm_mb": child.sampled_hwm_mb,
        "runs": warehouse["runs"],
        "runs_per_second": warehouse["runs"] / child.wall_seconds,
        "emulator_requests": requests,
        "ledger_api_requests": ledger["api_requests"],
        "ledger_runs_loaded": ledger["runs_loaded"],
        "counts": warehouse["counts"],
        "folder": str(folder),
    }


def summarise_backfills(runs: list[dict[str, Any]]) -> dict[str, Any]:
    wall = median([r["wall_seconds"] for r in runs])
    runs_loaded = runs[-1]["runs"]
    return {
        "repeats": runs,
        "wall_seconds": wall,
        "runs": runs_loaded,
        "runs_per_second": runs_loaded / wall,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "emulator_requests": runs[-1]["emulator_requests"],
        "ledger_api_requests": runs[-1]["ledger_api_requests"],
        "exit_codes": [r["exit_code"] for r in runs],
        "cpu_seconds": median([r["cpu_seconds"] for r in runs]),
    }


def baseline_http_once(emulator: Emulator, folder: Path) -> dict[str, Any]:
    """Plain dlt reading the same partition pages over HTTP, as a process."""
    folder.mkdir(parents=True)
    env = dict(
        os.environ,
        DLT_DATA_DIR=str(folder / "dlt"),
        RUNTIME__DLTHUB_TELEMETRY="false",
        SIXTYFOUR_BENCH_API_KEY=API_KEY,
    )
    before = emulator.request_count()
    command = [
        PYTHON,
        str(BENCH_DIR / "processing.py"),
        "baseline-http",
        emulator.base_url,
        str(folder),
    ]
    child = checked("baseline (HTTP)", run_child(command, env, folder))
    inner = json_line(child)
    return {
        "wall_seconds": child.wall_seconds,
        "peak_rss_mb": child.peak_rss_mb,
        "runs": inner["runs"],
        "runs_per_second": inner["runs"] / child.wall_seconds,
        "emulator_requests": emulator.request_count() - before,
        "steps": inner["steps"],
    }


def processing_once(mode: str, pages_dir: Path, folder: Path) -> dict[str, Any]:
    """One side of the in-memory comparison, in its own process."""
    folder.mkdir(parents=True)
    env = dict(os.environ, DLT_DATA_DIR=str(folder / "dlt"), RUNTIME__DLTHUB_TELEMETRY="false")
    command = [PYTHON, str(BENCH_DIR / "processing.py"), mode, str(pages_dir), str(folder)]
    child = checked(f"processing ({mode})", run_child(command, env, folder))
    inner = json_line(child)
    return {
        "seconds": inner["seconds"],
        "runs": inner["runs"],
        "runs_per_second": inner["runs"] / inner["seconds"],
        "steps": inner["steps"],
        "peak_rss_mb": child.peak_rss_mb,
    }


def fetch_pages(emulator: Emulator, folder: Path) -> dict[str, Any]:
    """The backfill's pages, read once one after another and saved for the in-memory part."""
    env = dict(os.environ, SIXTYFOUR_BENCH_API_KEY=API_KEY)
    command = [PYTHON, str(BENCH_DIR / "processing.py"), "fetch", emulator.base_url, str(folder)]
    return json_line(checked("fetch", run_child(command, env, folder.parent)))


def end_to_end_runs(
    emulator: Emulator, work: Path, repeats: int, with_baseline: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Our backfill and the plain dlt baseline, taking turns.

    The machine's speed drifts by 10% and more over minutes (other guests on the host):
    alternating the two keeps a slow stretch from landing on one side only.
    """
    ours: list[dict[str, Any]] = []
    plain: list[dict[str, Any]] = []
    for i in range(repeats):
        ours.append(backfill_once(emulator, work / f"backfill-{i}"))
        if with_baseline:
            plain.append(baseline_http_once(emulator, work / f"baseline-http-{i}"))
    return ours, plain


def part_backfill(report: Report, runs: list[dict[str, Any]]) -> None:
    report.section(
        f"1-2. Backfill: {LARGE.runs:,} runs in {LARGE.workflows} workflows "
        f"(`python -m pipelines backfill --no-details`, fresh DuckDB, median of {len(runs)})"
    )
    summary = summarise_backfills(runs)
    report.results["backfill"] = summary
    report.row("runs in the warehouse", thousands(summary["runs"]))
    report.row(
        "wall time (process start to exit)",
        f"{summary['wall_seconds']:.2f} s",
        report.repeats("end to end (ours)", [r["wall_seconds"] for r in runs]),
    )
    report.row("runs/s", thousands(summary["runs_per_second"]))
    report.row("CPU time of the sync process", f"{summary['cpu_seconds']:.2f} s")
    report.row("requests (emulator count)", str(summary["emulator_requests"]))
    report.row("requests (ledger sync_runs.api_requests)", str(summary["ledger_api_requests"]))
    report.row(
        "peak RSS of the sync process",
        f"{summary['peak_rss_mb']:.0f} MB",
        "each: " + ", ".join(f"{r['peak_rss_mb']:.0f}" for r in runs),
    )
    report.row("exit codes", ", ".join(map(str, summary["exit_codes"])), "(3 = a gap)")
    report.target(
        "backfill exits 0 (no gap)",
        str(summary["exit_codes"]),
        all(code == 0 for code in summary["exit_codes"]),
    )
    report.target(
        "requests counted alike by emulator and ledger",
        f"{summary['emulator_requests']} / {summary['ledger_api_requests']}",
        summary["emulator_requests"] == summary["ledger_api_requests"],
    )


def part_noop(report: Report, emulator: Emulator, repeats: int) -> None:
    backfill = report.results["backfill"]["repeats"][-1]
    folder = Path(backfill["folder"])
    database = folder / "warehouse.duckdb"
    report.section(
        f"6. No-op incremental sync after the backfill (median of {max(repeats, 5)}, each "
        "followed by a bare import)"
    )
    env = sync_env(emulator.base_url, database, folder / "dlt")
    before_sync = inspect(database)
    walls: list[float] = []
    requests: list[int] = []
    codes: list[int] = []
    imports: list[float] = []
    # Pairs, interleaved, so both figures see the same machine noise.
    for _ in range(max(repeats, 5)):
        count = emulator.request_count()
        child = run_child([PYTHON, "-m", "pipelines", "run", "--no-details"], env, folder)
        requests.append(emulator.request_count() - count)
        walls.append(child.wall_seconds)
        codes.append(child.returncode)
        only_import = run_child([PYTHON, "-c", "import dlt"], dict(os.environ), folder)
        imports.append(checked("import dlt", only_import).wall_seconds)
    after = inspect(database)
    new_rows = after["ledger"][len(before_sync["ledger"]) :]
    loaded_nothing = (
        len(new_rows) == len(walls)
        and all(row["runs_loaded"] == 0 for row in new_rows)
        and after["counts"] == before_sync["counts"]
        and after["runs_fingerprint"] == before_sync["runs_fingerprint"]
    )
    wall, bare = median(walls), median(imports)
    report.results["noop"] = {
        "requests": requests,
        "ledger_rows": new_rows,
        "wall_seconds": walls,
        "exit_codes": codes,
        "import_dlt_seconds": imports,
        "loaded_only_ledger_rows": loaded_nothing,
        "wall_median": wall,
        "import_dlt_median": bare,
    }
    report.row("requests per no-op sync (emulator count)", ", ".join(map(str, requests)))
    report.row(
        "ledger rows added / runs_loaded",
        f"{len(new_rows)} / " + ", ".join(str(row["runs_loaded"]) for row in new_rows),
    )
    unchanged = (
        after["counts"] == before_sync["counts"]
        and after["runs_fingerprint"] == before_sync["runs_fingerprint"]
    )
    report.row("data tables unchanged (counts, runs' state)", "yes" if unchanged else "no")
    report.row(
        "dlt loads added (_dlt_loads rows)", str(after["dlt_loads"] - before_sync["dlt_loads"])
    )
    report.row(
        "wall time of the no-op sync",
        f"{wall:.2f} s",
        report.repeats("no-op sync", walls),
    )
    report.row(
        "wall time of `python -c 'import dlt'`",
        f"{bare:.2f} s",
        report.repeats("bare import", imports),
    )
    report.row("exit codes", ", ".join(map(str, codes)))
    report.target(
        f"no-op sends <= {NOOP_REQUESTS} requests",
        f"max {max(requests)}",
        max(requests) <= NOOP_REQUESTS and all(code == 0 for code in codes),
    )
    report.target(
        "no-op loads nothing but its ledger row", "yes" if loaded_nothing else "no", loaded_nothing
    )
    report.target(
        f"no-op wall <= {NOOP_IMPORT_RATIO:g}x bare `import dlt`",
        f"{wall:.2f} s / {bare:.2f} s = {wall / bare:.2f}x",
        wall <= NOOP_IMPORT_RATIO * bare,
    )


def part_baseline(report: Report, runs: list[dict[str, Any]]) -> None:
    report.section(
        "3. Plain dlt baseline over HTTP, same partition pages, each run right after one of "
        f"ours (median of {len(runs)})"
    )
    wall = median([r["wall_seconds"] for r in runs])
    total = runs[-1]["runs"]
    baseline_rate = total / wall
    ours_rate = report.results["backfill"]["runs_per_second"]
    ratio = ours_rate / baseline_rate
    report.results["baseline_http"] = {
        "repeats": runs, "wall_seconds": wall, "runs": total, "runs_per_second": baseline_rate,
        "ratio_ours_over_baseline": ratio,
    }  # fmt: skip
    steps = runs[-1]["steps"]
    report.row("runs in the warehouse", thousands(total))
    report.row(
        "wall time (process start to exit)",
        f"{wall:.2f} s",
        report.repeats("end to end (baseline)", [r["wall_seconds"] for r in runs]),
    )
    report.row("runs/s", thousands(baseline_rate))
    report.row("requests (emulator count)", str(runs[-1]["emulator_requests"]))
    report.row("dlt steps extract / normalize / load", _steps(steps))
    report.row("peak RSS", f"{max(r['peak_rss_mb'] for r in runs):.0f} MB")
    report.row("ours / baseline (runs/s)", f"{ratio:.2f}x")
    report.target(
        f"end to end ours >= {END_TO_END_RATIO:g}x plain dlt",
        f"{ratio:.2f}x",
        ratio >= END_TO_END_RATIO,
    )


def part_processing(report: Report, pages_dir: Path, work: Path, repeats: int) -> None:
    report.section(
        f"4. Processing alone: page bytes in memory to rows in DuckDB (median of {repeats})"
    )
    ours, plain = [], []
    for i in range(repeats):
        ours.append(processing_once("ours", pages_dir, work / f"processing-ours-{i}"))
        plain.append(processing_once("baseline", pages_dir, work / f"processing-plain-{i}"))
    ours_seconds = median([r["seconds"] for r in ours])
    plain_seconds = median([r["seconds"] for r in plain])
    ours_rate = ours[-1]["runs"] / ours_seconds
    plain_rate = plain[-1]["runs"] / plain_seconds
    ratio = ours_rate / plain_rate
    report.results["processing"] = {
        "ours": ours, "baseline": plain, "ours_seconds": ours_seconds,
        "baseline_seconds": plain_seconds, "ours_runs_per_second": ours_rate,
        "baseline_runs_per_second": plain_rate, "ratio": ratio,
    }  # fmt: skip
    report.row(
        "ours: orjson, shaping, Arrow, dlt",
        f"{ours_seconds:.2f} s",
        f"{thousands(ours_rate)} runs/s; " + _steps(ours[-1]["steps"]),
    )
    report.row(
        "  each repeat", "", report.repeats("processing (ours)", [r["seconds"] for r in ours])
    )
    report.row(
        "baseline: json.loads, dlt normaliser, parquet",
        f"{plain_seconds:.2f} s",
        f"{thousands(plain_rate)} runs/s; " + _steps(plain[-1]["steps"]),
    )
    report.row(
        "  each repeat", "", report.repeats("processing (baseline)", [r["seconds"] for r in plain])
    )
    report.row("runs in each warehouse", f"{ours[-1]['runs']:,} / {plain[-1]['runs']:,}")
    report.row("ours / baseline", f"{ratio:.2f}x")
    report.target(
        f"processing ours >= {PROCESSING_RATIO:g}x baseline",
        f"{ratio:.2f}x",
        ratio >= PROCESSING_RATIO,
    )
    report.target(
        f"processing ours >= {PROCESSING_RUNS_PER_SECOND:,} runs/s",
        f"{thousands(ours_rate)} runs/s",
        ours_rate >= PROCESSING_RUNS_PER_SECOND,
    )


def part_memory(report: Report, work: Path, repeats: int) -> None:
    report.section(
        f"5. Peak RSS against history size ({SMALL.runs:,} runs in {SMALL.workflows} workflows "
        f"vs {LARGE.runs:,} in {LARGE.workflows})"
    )
    with Emulator(SMALL.workflows, SMALL.runs, SMALL.in_flight_share) as emulator:
        runs = [backfill_once(emulator, work / f"small-{i}") for i in range(repeats)]
    small = summarise_backfills(runs)
    large = report.results["backfill"]
    growth = large["peak_rss_mb"] / small["peak_rss_mb"]
    history = LARGE.runs / SMALL.runs
    per_100k = (large["peak_rss_mb"] - small["peak_rss_mb"]) / (LARGE.runs - SMALL.runs) * 1e5
    report.results["memory"] = {
        "small_backfill": small, "large_peak_rss_mb": large["peak_rss_mb"],
        "small_peak_rss_mb": small["peak_rss_mb"], "growth": growth, "history_growth": history,
        "mb_per_100k_runs": per_100k,
    }  # fmt: skip
    report.row(
        f"peak RSS, {SMALL.runs:,} runs",
        f"{small['peak_rss_mb']:.0f} MB",
        f"({thousands(small['runs_per_second'])} runs/s, exit {small['exit_codes']})",
    )
    report.row(f"peak RSS, {LARGE.runs:,} runs", f"{large['peak_rss_mb']:.0f} MB")
    report.row(
        "growth of peak RSS / growth of history",
        f"{growth:.2f}x / {history:.0f}x",
        f"{per_100k:.0f} MB more per 100,000 runs",
    )
    report.target(
        f"backfill peak RSS <= {PEAK_RSS_MB:.0f} MB at {LARGE.runs:,} runs",
        f"{large['peak_rss_mb']:.0f} MB",
        large["peak_rss_mb"] <= PEAK_RSS_MB,
    )
    report.target(
        f"peak RSS grows far slower than history (<= {RSS_GROWTH_RATIO:g}x for {history:.0f}x)",
        f"{growth:.2f}x",
        growth <= RSS_GROWTH_RATIO,
    )


def part_paced(report: Report, work: Path) -> None:
    report.section(
        f"7. Rate-limited backfill: {PACED.runs:,} runs in {PACED.workflows} workflows, "
        f"client paced at {PACED_LIMIT}/min, emulator limit {PACED_SERVER_LIMIT}/min"
    )
    folder = work / "paced"
    folder.mkdir()
    database = folder / "warehouse.duckdb"
    with Emulator(
        PACED.workflows, PACED.runs, PACED.in_flight_share, rate_limit_per_minute=PACED_SERVER_LIMIT
    ) as emulator:
        env = sync_env(
            emulator.base_url,
            database,
            folder / "dlt",
            SOURCES__SIXTYFOUR__RATE_LIMIT_PER_MINUTE=str(PACED_LIMIT),
        )
        child = run_child([PYTHON, "-m", "pipelines", "backfill", "--no-details"], env, folder)
        window = emulator.window(PACED_LIMIT)
    checked("rate-limited backfill", child, accept=(0, 3))
    ledger = inspect(database)["ledger"][-1]
    requests = int(window["count"])
    duration = child.wall_seconds
    # A sliding 60 s window lets the first LIMIT requests go at once, the next LIMIT a
    # minute after them, and so on: the least time N requests can take.
    least = 60.0 * ((requests - 1) // PACED_LIMIT)
    busiest, refused = int(window["busiest_60s"]), int(window["refused_429"])
    report.results["paced"] = {
        "requests": requests, "limit_per_minute": PACED_LIMIT,
        "server_limit_per_minute": PACED_SERVER_LIMIT, "wall_seconds": duration,
        "busiest_60s": busiest, "refused_429": refused, "first_60s": window["first_60s"],
        "last_request_at": window["last_at"], "ledger_rate_limited": ledger["rate_limited"],
        "shortest_span_over_budget": window["shortest_span_over_budget"],
        "least_seconds": least, "requests_over_limit_seconds": requests / PACED_LIMIT * 60,
        "exit_code": child.returncode,
    }  # fmt: skip
    report.row(
        "requests (emulator count)",
        str(requests),
        f"ledger: {ledger['api_requests']}, exit {child.returncode}",
    )
    report.row("wall time (process start to exit)", f"{duration:.1f} s")
    report.row(
        "requests / limit",
        f"{requests / PACED_LIMIT * 60:.1f} s",
        f"least the sliding window allows: {least:.0f} s",
    )
    report.row(
        "served in the first 60 s / after",
        f"{window['first_60s']:.0f} / {requests - refused - window['first_60s']:.0f}",
        f"last one {window['last_at']:.1f} s after the first",
    )
    report.row(
        "mean rate over the run",
        f"{requests / duration * 60:.0f}/min",
        f"limit {PACED_LIMIT}/min (one window and a little: above the limit by design)",
    )
    span = window["shortest_span_over_budget"]
    report.row("most served requests in any 60 s", str(busiest), f"limit {PACED_LIMIT}")
    report.row(
        f"shortest time holding {PACED_LIMIT + 1} served requests",
        f"{span:.3f} s" if span >= 0 else "never",
        "under 60 s: over the limit",
    )
    report.row("429 answers (emulator / ledger)", f"{refused} / {ledger['rate_limited']}")
    report.target(
        "paced: never over the limit, no 429",
        f"busiest 60 s {busiest}/{PACED_LIMIT}, {refused} x 429",
        busiest <= PACED_LIMIT and refused == 0,
    )
    report.target(
        f"paced: within {PACED_SLACK_SECONDS:g} s of the least time",
        f"{duration:.1f} s vs {least:.0f} s",
        duration <= least + PACED_SLACK_SECONDS,
    )


def _steps(steps: dict[str, float]) -> str:
    return (
        " / ".join(
            f"{steps.get(name, float('nan')):.2f}" for name in ("extract", "normalize", "load")
        )
        + " s"
    )


# -- the whole run --------------------------------------------------------------------------


def run_part(report: Report, name: str, part: Callable[[], None]) -> None:
    try:
        part()
    except Exception as exc:  # one failing part must not hide the others' figures
        report.failed(name, exc)
        if os.environ.get("BENCH_VERBOSE"):
            traceback.print_exc()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs of each timed part; the median is reported (default 3)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--skip",
        default="",
        help="parts to leave out, comma-separated: baseline, no-op, processing, memory, paced "
        "(for quick looks while working; a full run is what the README quotes)",
    )
    args = parser.parse_args()
    repeats = max(1, args.repeats)
    skipped = {name.strip() for name in args.skip.split(",") if name.strip()}

    def wanted(name: str) -> bool:
        return name not in skipped

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="sixtyfour-bench-"))
    report = Report()
    machine: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "dlt": version("dlt"),
        "duckdb": version("duckdb"),
        "pyarrow": version("pyarrow"),
        "bench_rss_mb": own_rss_mb(),
        "load_average_at_start": os.getloadavg(),
    }
    report.results["machine"] = machine
    report.results["skipped_parts"] = sorted(skipped)
    code = report.results["code"] = code_version()
    print(
        f"sixtyfour-sync benchmark: {machine['cpus']} CPUs, Python {machine['python']}, "
        f"dlt {machine['dlt']}, duckdb {machine['duckdb']}, pyarrow {machine['pyarrow']}"
    )
    changed = f", changed: {' '.join(code['changed'])}" if code["changed"] else ""
    print(f"code: commit {code['commit']}{changed}")
    print(
        f"work folder {work}; this process holds {machine['bench_rss_mb']:.0f} MB "
        "(counted in each child's ru_maxrss)"
    )
    pages_dir = work / "pages"
    try:
        with Emulator(LARGE.workflows, LARGE.runs, LARGE.in_flight_share) as emulator:
            hello = emulator.hello
            report.results["emulator"] = hello
            report.section("Emulator (own process, rate limit lifted, clock still)")
            report.row(
                "history",
                f"{hello['runs']:,} runs",
                f"{hello['workflows']} workflows, {hello['in_flight']} in flight",
            )
            report.row(
                "built / payloads serialised",
                f"{hello['build_seconds']:.1f} s / {hello['warm_seconds']:.1f} s",
            )
            fetched = fetch_pages(emulator, pages_dir)
            report.results["emulator"]["sequential_fetch"] = fetched
            report.row(
                "serving the backfill's requests, one by one",
                f"{fetched['serve_seconds']:.2f} s",
                f"{fetched['pages'] + 1} requests, {fetched['mb']:.0f} MB, no parsing: "
                "the API's share",
            )
            ours: list[dict[str, Any]] = []
            plain: list[dict[str, Any]] = []

            def take_turns() -> None:
                ours[:], plain[:] = end_to_end_runs(emulator, work, repeats, wanted("baseline"))

            run_part(report, "backfill and baseline runs", take_turns)
            if ours:
                run_part(report, "backfill", lambda: part_backfill(report, ours))
            if "backfill" in report.results and plain:
                run_part(report, "baseline", lambda: part_baseline(report, plain))
            if "backfill" in report.results and wanted("no-op"):
                run_part(report, "no-op", lambda: part_noop(report, emulator, repeats))
        if wanted("processing"):
            run_part(
                report, "processing", lambda: part_processing(report, pages_dir, work, repeats)
            )
        if "backfill" in report.results and wanted("memory"):
            run_part(report, "memory", lambda: part_memory(report, work, repeats))
        if wanted("paced"):
            run_part(report, "paced", lambda: part_paced(report, work))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - started
    report.results["targets"] = report.targets
    report.results["bench_seconds"] = elapsed
    report.results["machine"]["load_average_at_end"] = os.getloadavg()
    report.results["repeat_spreads"] = report.spreads
    RESULTS_PATH.write_text(json.dumps(report.results, indent=2, default=str) + "\n")

    report.section("Targets")
    width = max(len(t["target"]) for t in report.targets)
    for t in report.targets:
        print(f"  {'MET' if t['met'] else 'NOT MET':>7}  {t['target']:<{width}}  {t['figure']}")
    met = sum(t["met"] for t in report.targets)
    start_load = machine["load_average_at_start"][0]
    print(
        f"\n{met} of {len(report.targets)} targets met; {elapsed:.0f} s in all; "
        f"figures in {RESULTS_PATH.relative_to(BENCH_DIR.parent)}"
    )
    print(
        f"load average (1 min) at start {start_load:.2f}, at end {os.getloadavg()[0]:.2f}: "
        "other work on this machine shows in the timings"
    )
    uneven = {f: spread for f, spread in report.spreads.items() if spread > UNEVEN_REPEATS}
    if uneven:
        # A shared machine whose speed changes within minutes moves a median of three too.
        spreads = ", ".join(
            f"{f} {spread:.0%}" for f, spread in sorted(uneven.items(), key=lambda i: -i[1])
        )
        print(
            "warning: the machine's speed varied during the run; slowest repeat against the "
            f"fastest: {spreads}. Ratios near a target need another run to be trusted"
        )


if __name__ == "__main__":
    main()
