"""What the CLI prints: sync reports, status, backfill progress; secrets never included."""

from __future__ import annotations

import os
import sys
import time
from types import TracebackType
from typing import Any

from pipelines.sixtyfour.ledger import SyncReport
from pipelines.sixtyfour.reader import ReadProgress


def redact(text: str) -> str:
    """Replace the API key, wherever it is known, by ***."""
    for secret in _known_secrets():
        text = text.replace(secret, "***")
    return text


def _known_secrets() -> list[str]:
    secrets = [os.environ.get("SOURCES__SIXTYFOUR__API_KEY", "")]
    try:
        import dlt

        secrets.append(str(dlt.secrets.get("sources.sixtyfour.api_key") or ""))
    except Exception:  # no secrets file or an unreadable one: nothing more to hide
        pass
    return [s for s in secrets if len(s) >= 4]


def describe_unexpected(exc: BaseException) -> str:
    """One line for an error the sync did not foresee: the innermost cause, briefly."""
    step = getattr(exc, "step", None)
    inner: BaseException = exc
    while getattr(inner, "exception", None) is not None or inner.__cause__ is not None:
        inner = getattr(inner, "exception", None) or inner.__cause__  # type: ignore[assignment]
    lines = [line.strip() for line in str(inner).splitlines() if line.strip()]
    where = f"dlt step '{step}' failed: " if step else ""
    return redact(f"{where}{type(inner).__name__}: {(lines[0] if lines else '')[:300]}")


def print_report(report: SyncReport) -> None:
    """One summary line on stdout; a warning line per gap on stderr."""
    cursor = report.cursor_after.isoformat() if report.cursor_after else "none"
    print(
        f"{report.mode} {report.status}: {report.runs_loaded} runs loaded, {report.runs_seen} seen,"
        f" {report.api_requests} requests ({report.http_retries} retries,"
        f" {report.rate_limited} rate-limited), {report.partitions} partitions,"
        f" {report.detail_requests} block details ({report.details_pending} waiting),"
        f" cursor {cursor}"
    )
    if report.runs_resolved_by_id:
        print(f"{report.runs_resolved_by_id} runs that ended out of the lists' reach read by id")
    for job_id in report.unknown_runs:
        print(
            f"warning: run {job_id} is in flight in the warehouse but unknown to the API",
            file=sys.stderr,
        )
    for job_id, reason in report.unread_runs:
        print(f"warning: live_status of run {job_id} not read: {reason}", file=sys.stderr)
    for gap in report.gaps:
        print(f"warning: gap: {gap.describe()}", file=sys.stderr)
    if report.gaps:
        print("warning: some changes could not be read; see sync_runs.gap_detail", file=sys.stderr)


def print_status(status: dict[str, Any]) -> None:
    """The status command's text."""
    print(f"cursor: {status['cursor'] or 'none (no sync loaded yet)'}")
    print(f"runs in flight in the warehouse: {status['in_flight']}")
    print(f"finished runs waiting for block detail: {status['details_waiting']}")
    gap = status.get("open_gap")
    print(f"open gap: {gap}" if gap else "open gap: none")
    syncs = status["syncs"]
    if not syncs:
        print("no sync recorded yet")
        return
    print("last syncs:")
    for row in syncs:
        started = row["started_at"].isoformat(timespec="seconds") if row["started_at"] else "?"
        seconds = (
            (row["finished_at"] - row["started_at"]).total_seconds()
            if row["finished_at"] and row["started_at"]
            else 0.0
        )
        line = (
            f"  {started}  {row['mode'] or 'run':8} {row['status']:6} "
            f"{row['runs_loaded'] or 0:>7} loaded {row['api_requests'] or 0:>6} requests "
            f"{seconds:8.1f}s"
        )
        if row.get("details_unread"):
            line += f"  unread live_status: {row['details_unread']}"
        if row.get("error"):
            line += f"  error: {row['error']}"
        print(line)


class BackfillProgress:
    """Progress of a backfill: a bar on a terminal, a log line every few seconds under cron."""

    LOG_EVERY_SECONDS = 10.0

    def __init__(self) -> None:
        self._interactive = sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None
        self._started = time.monotonic()
        self._last_line = float("-inf")  # the first progress shows at once

    def __enter__(self) -> BackfillProgress:
        if self._interactive:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._bar = Progress(
                TextColumn("partitions"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task("backfill", total=None, detail="")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def __call__(self, progress: ReadProgress) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        detail = (
            f"{progress.runs} runs, {progress.requests} requests "
            f"({progress.requests / elapsed * 60:.0f}/min)"
        )
        if self._bar is not None:
            self._bar.update(
                self._task,
                completed=progress.partitions_done,
                total=progress.partitions_total,
                detail=detail,
            )
        elif time.monotonic() - self._last_line >= self.LOG_EVERY_SECONDS:
            self._last_line = time.monotonic()
            print(
                f"backfill: {progress.partitions_done}/{progress.partitions_total} partitions, "
                f"{detail}",
                file=sys.stderr,
            )
