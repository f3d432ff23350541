"""The sync_runs ledger: one row per sync, loaded with the sync's own data."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa

from pipelines.sixtyfour.reach import Gap
from pipelines.sixtyfour.timestamps import UTC_MICROS

LEDGER_TABLE = "sync_runs"

LEDGER_SCHEMA = pa.schema(
    [
        pa.field("sync_id", pa.string(), nullable=False),
        pa.field("mode", pa.string()),
        pa.field("started_at", UTC_MICROS),
        pa.field("finished_at", UTC_MICROS),
        pa.field("status", pa.string()),
        pa.field("api_requests", pa.int64()),
        pa.field("http_retries", pa.int64()),
        pa.field("rate_limited", pa.int64()),
        pa.field("runs_seen", pa.int64()),
        pa.field("runs_loaded", pa.int64()),
        pa.field("partitions", pa.int64()),
        pa.field("detail_requests", pa.int64()),
        # Runs whose live_status could not be read (or was not asked, the API failing):
        # each is named, with why, in the sync's warnings.
        pa.field("details_unread", pa.int64()),
        pa.field("gap_detected", pa.bool_()),
        pa.field("gap_detail", pa.string()),
        pa.field("cursor_before", UTC_MICROS),
        pa.field("cursor_after", UTC_MICROS),
        pa.field("error", pa.string()),
    ]
)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class SyncReport:
    """What one sync did; filled in as it goes, loaded as its ledger row."""

    mode: str = "run"
    sync_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_at: datetime = field(default_factory=utc_now)
    finished_at: datetime | None = None
    api_requests: int = 0
    http_retries: int = 0
    rate_limited: int = 0
    runs_seen: int = 0
    runs_loaded: int = 0
    partitions: int = 0
    detail_requests: int = 0
    details_pending: int = 0
    runs_resolved_by_id: int = 0
    unknown_runs: list[str] = field(default_factory=list)
    unread_runs: list[tuple[str, str]] = field(default_factory=list)  # live_status failed: why
    gaps: list[Gap] = field(default_factory=list)
    cursor_before: datetime | None = None
    cursor_after: datetime | None = None
    error: str | None = None

    @property
    def status(self) -> str:
        if self.error:
            return "failed"
        return "gap" if self.gaps else "ok"

    @property
    def gap_detail(self) -> str | None:
        return "; ".join(gap.describe() for gap in self.gaps) or None

    def ledger_table(self) -> pa.Table:
        """The report as a one-row sync_runs table."""
        row = {
            "sync_id": self.sync_id,
            "mode": self.mode,
            "started_at": self.started_at,
            "finished_at": self.finished_at or utc_now(),
            "status": self.status,
            "api_requests": self.api_requests,
            "http_retries": self.http_retries,
            "rate_limited": self.rate_limited,
            "runs_seen": self.runs_seen,
            "runs_loaded": self.runs_loaded,
            "partitions": self.partitions,
            "detail_requests": self.detail_requests,
            "details_unread": len(self.unread_runs),
            "gap_detected": bool(self.gaps),
            "gap_detail": self.gap_detail,
            "cursor_before": self.cursor_before,
            "cursor_after": self.cursor_after,
            "error": self.error,
        }
        return pa.Table.from_pylist([row], schema=LEDGER_SCHEMA)
