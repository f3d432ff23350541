"""The reach planner's rules, as pure logic: when a page covers the watermark, what to skip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pipelines.sixtyfour.reach import PageReach, RunFilter, status_filters, workflows_to_read

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)


def test_a_page_that_is_not_full_holds_the_whole_filter() -> None:
    assert PageReach(RunFilter(), 499, T0).reaches(T0 + timedelta(days=1))
    assert PageReach(RunFilter(), 0, None).reaches(None)


def test_a_full_page_covers_only_when_it_reaches_back_past_the_watermark() -> None:
    full = PageReach(RunFilter(), 500, T0)
    assert full.reaches(T0 + timedelta(seconds=1))
    assert not full.reaches(T0)
    assert not full.reaches(T0 - timedelta(hours=1))


def test_a_full_page_never_covers_a_read_without_watermark() -> None:
    assert not PageReach(RunFilter(), 500, T0).reaches(None)


def test_idle_workflows_cost_no_request() -> None:
    workflows: list[dict[str, Any]] = [
        {"id": "busy", "last_run_date": (T0 + timedelta(minutes=5)).isoformat()},
        {"id": "idle", "last_run_date": (T0 - timedelta(days=3)).isoformat()},
        {"id": "unknown-activity"},
        {"id": "never-ran", "last_run_date": None, "created_at": "2026-01-01T00:00:00Z"},
    ]
    # Without a last run date nothing proves a workflow idle: it is read.
    assert workflows_to_read(workflows, T0) == ["busy", "unknown-activity", "never-ran"]
    assert workflows_to_read(workflows, None) == ["busy", "idle", "unknown-activity", "never-ran"]


def test_failed_filter_is_tried_until_the_api_refuses_it() -> None:
    assert "failed" in status_filters(None)
    assert "failed" in status_filters(True)
    assert "failed" not in status_filters(False)
    assert {"completed", "cancelled", "active"} <= set(status_filters(False))
