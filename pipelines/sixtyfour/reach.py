"""Which list requests a sync needs to see every change (pure logic, no I/O).

The list endpoint shows only the newest 500 runs of a filter, ordered by queued_at, with no
pagination. A full page that does not reach back to the watermark means more changed than
one call can show; the sync then narrows: per workflow, then per workflow and status. Where
even the narrowest filter is full, the runs queued before its oldest one are out of reach:
that is a gap, and the sync says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipelines.sixtyfour import settings
from pipelines.sixtyfour.timestamps import BadTimestamp, parse_instant


@dataclass(frozen=True)
class RunFilter:
    """The query of one GET /workflows/runs request (a partition of the runs)."""

    workflow_id: str | None = None
    status: str | None = None

    def describe(self) -> str:
        parts = [f"workflow_id={self.workflow_id}"] if self.workflow_id else []
        if self.status:
            parts.append(f"status={self.status}")
        return " ".join(parts) or "all runs"


@dataclass(frozen=True)
class PageReach:
    """How far back in queued_at one page of a filter reaches."""

    filter: RunFilter
    count: int
    oldest_queued: datetime | None

    @property
    def full(self) -> bool:
        return self.count >= settings.PAGE_LIMIT

    def reaches(self, watermark: datetime | None) -> bool:
        """True when every run of the filter queued since `watermark` is on the page.

        A page that is not full holds the filter's whole history. A full page covers what
        was queued after its oldest run; runs queued before the watermark that changed since
        were in flight at the last sync and are followed up by id.
        """
        if not self.full:
            return True
        if watermark is None or self.oldest_queued is None:
            return False
        return self.oldest_queued < watermark


@dataclass(frozen=True)
class Gap:
    """Runs of a filter that no request can reach: queued in [since, until)."""

    filter: RunFilter
    since: datetime | None
    until: datetime | None
    reason: str

    def describe(self) -> str:
        since = self.since.isoformat() if self.since else "the beginning"
        until = self.until.isoformat() if self.until else "now"
        return f"{self.filter.describe()}: runs queued {since} .. {until} ({self.reason})"


def workflows_to_read(
    workflows: Iterable[Mapping[str, Any]], watermark: datetime | None
) -> list[str]:
    """Ids of the workflows that may hold runs queued since the watermark.

    `last_run_date` (when present and readable) says when a workflow last queued a run; a
    workflow idle since before the watermark cannot have new runs and costs no request.
    """
    ids: list[str] = []
    for workflow in workflows:
        workflow_id = workflow.get("id")
        if not isinstance(workflow_id, str):
            continue
        if watermark is not None and _idle_since(workflow, watermark):
            continue
        ids.append(workflow_id)
    return ids


def _idle_since(workflow: Mapping[str, Any], watermark: datetime) -> bool:
    # Without a readable last_run_date nothing proves the workflow idle: it is read.
    last = _instant(workflow.get("last_run_date"))
    return last is not None and last < watermark


def _instant(value: Any) -> datetime | None:
    try:
        return None if value is None else parse_instant(value)
    except BadTimestamp:
        return None


def status_filters(failed_filter_supported: bool | None) -> tuple[str, ...]:
    """The status filters that partition one workflow's runs.

    `failed` is not a documented filter: it is tried unless the API already refused it.
    """
    if failed_filter_supported is False:
        return tuple(s for s in settings.NARROWING_STATUSES if s != "failed")
    return settings.NARROWING_STATUSES


def gap_for(reach: PageReach, watermark: datetime | None, reason: str) -> Gap:
    """The gap a full, narrowest page leaves behind it."""
    return Gap(reach.filter, watermark, reach.oldest_queued, reason)
