"""The cursor's rules: what counts as changed, the lag window, runs stored as in flight."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from pipelines.sixtyfour.changes import ChangeFilter, TrackedRun, hold_back
from pipelines.sixtyfour.client import _server_time
from pipelines.sixtyfour.timestamps import to_micros

T = to_micros(datetime(2026, 11, 1, 12, tzinfo=UTC))
SECOND = 1_000_000


def page(*runs: tuple[str, int, str]) -> tuple[list[str], list[int], list[str]]:
    return [r[0] for r in runs], [r[1] for r in runs], [r[2] for r in runs]


def test_everything_is_new_before_the_first_load() -> None:
    changes = ChangeFilter(cursor=None, lag=300 * SECOND)
    assert changes.select(*page(("a", T, "completed"), ("b", T - 99 * SECOND, "failed"))) == [
        True,
        True,
    ]
    assert changes.cursor_after() == T


def test_the_lag_window_is_read_again_but_loads_only_what_differs() -> None:
    changes = ChangeFilter(cursor=T, lag=300 * SECOND, recent={"a": T - 10 * SECOND})
    mask = changes.select(
        *page(
            ("a", T - 10 * SECOND, "completed"),  # loaded before, unchanged
            ("b", T - 20 * SECOND, "completed"),  # written late inside the window: new
            ("c", T - 900 * SECOND, "completed"),  # behind the window: loaded long ago
            ("d", T + 5 * SECOND, "running"),  # after the cursor
        )
    )
    assert mask == [False, True, False, True]
    assert changes.cursor_after() == T + 5 * SECOND


def test_a_run_stored_in_flight_is_loaded_when_it_changed_whatever_its_time() -> None:
    tracked = {
        "old": TrackedRun("old", "running", T - 86_400 * SECOND, {}),
        "same": TrackedRun("same", "running", T - 86_400 * SECOND, {}),
    }
    changes = ChangeFilter(cursor=T, lag=0, tracked=tracked)
    mask = changes.select(
        *page(
            ("old", T - 86_000 * SECOND, "completed"),
            ("same", T - 86_400 * SECOND, "running"),
        )
    )
    assert mask == [True, False]


def test_a_run_on_the_in_flight_page_unknown_to_the_warehouse_is_loaded() -> None:
    changes = ChangeFilter(cursor=T, lag=0)
    assert changes.select(*page(("x", T - 86_400 * SECOND, "running")), in_flight_page=True) == [
        True
    ]


def test_a_run_in_flight_behind_the_watermark_unknown_to_the_warehouse_is_loaded_once() -> None:
    # The newest page comes first: a run in flight with an old timestamp is on both.
    changes = ChangeFilter(cursor=T, lag=0)
    run = ("x", T - 86_400 * SECOND, "running")
    assert changes.select(*page(run)) == [True]
    assert changes.select(*page(run), in_flight_page=True) == [False]  # loaded once


def test_a_run_ended_behind_the_watermark_is_not_loaded_again() -> None:
    changes = ChangeFilter(cursor=T, lag=0)
    assert changes.select(*page(("x", T - 86_400 * SECOND, "completed"))) == [False]


def test_the_same_run_on_two_pages_loads_once_unless_it_moved_on() -> None:
    changes = ChangeFilter(cursor=None, lag=0)
    assert changes.select(*page(("a", T, "running"))) == [True]
    assert changes.select(*page(("a", T, "running"))) == [False]
    assert changes.select(*page(("a", T + SECOND, "completed"))) == [True]


def test_a_backfill_loads_all_and_never_moves_the_cursor_back() -> None:
    changes = ChangeFilter(cursor=T, lag=0, load_all=True)
    assert changes.select(*page(("a", T - 1000 * SECOND, "completed"))) == [True]
    assert changes.cursor_after() == T


def test_state_keeps_only_the_lag_windows_runs() -> None:
    changes = ChangeFilter(cursor=None, lag=60 * SECOND)
    changes.select(*page(("a", T, "completed"), ("b", T - 120 * SECOND, "completed")))
    state: dict[str, object] = {}
    changes.save(state)
    assert state["recent"] == {"a": T}
    restored = ChangeFilter.from_state(state, 60, {}, load_all=False)
    assert restored.cursor == T and restored.watermark == T - 60 * SECOND


def test_the_cursor_never_passes_the_moment_reading_began() -> None:
    changes = ChangeFilter(cursor=T, lag=0, read_from=T + 10 * SECOND)
    changes.select(*page(("late", T + 3600 * SECOND, "completed")))
    assert changes.cursor_after() == T + 10 * SECOND
    state: dict[str, object] = {}
    changes.save(state)
    # The run beyond the cap is remembered, so the next sync does not load it again.
    again = ChangeFilter.from_state(state, 0, {}, load_all=False)
    assert again.select(*page(("late", T + 3600 * SECOND, "completed"))) == [False]


@pytest.mark.parametrize("seed", range(6))
def test_a_backfill_notes_fresh_pages_in_bulk_exactly_as_run_by_run(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    ids = [f"run-{i}" for i in range(300)]
    pages = []
    for number in range(12):
        # Pages never seen before first, then overlapping ones (the same run on a workflow's
        # page and a status page), some runs moved on in between.
        chosen = ids[number * 40 : number * 40 + 40] if number < 3 else rng.sample(ids, 40)
        pages.append(page(*((j, T - rng.randrange(0, 3600) * SECOND, "completed") for j in chosen)))

    def backfill() -> tuple[list[list[bool]], dict[str, object], int]:
        changes = ChangeFilter(cursor=T - 7200 * SECOND, lag=900 * SECOND, load_all=True)
        masks = [changes.select(*p) for p in pages]
        state: dict[str, object] = {}
        changes.save(state)
        return masks, state, changes.loaded

    bulk_pages: list[int] = []
    load_all = ChangeFilter._load_all

    def counted(self: ChangeFilter, *args: Any) -> None:
        bulk_pages.append(1)
        load_all(self, *args)

    monkeypatch.setattr(ChangeFilter, "_load_all", counted)
    in_bulk = backfill()
    assert len(bulk_pages) >= 3
    monkeypatch.setattr(ChangeFilter, "_first_sight", lambda self, job_ids: False)
    assert in_bulk == backfill()


def test_a_run_loaded_again_behind_the_window_drops_its_older_window_entry() -> None:
    # X was loaded past the read-from cap last time; now an older-looking version of it
    # arrives. Its old entry must not survive: the next sync would skip X at that time.
    state = {"cursor": "2026-11-01T12:00:00+00:00", "recent": {"X": T + 500 * SECOND}}
    for load_all in (False, True):
        changes = ChangeFilter.from_state(state, 300, {}, load_all=load_all)
        changes.select(*page(("Y", T + 600 * SECOND, "completed")))
        changes.select(*page(("X", T - 100 * SECOND, "completed")))
        saved: dict[str, object] = {}
        changes.save(saved)
        assert saved["recent"] == {"Y": T + 600 * SECOND}, load_all


def test_a_workflow_read_to_the_end_forgets_its_runs_but_not_those_that_may_come_back() -> None:
    tracked = {"t": TrackedRun("t", "running", T - 60 * SECOND, {})}
    changes = ChangeFilter(cursor=None, lag=300 * SECOND, tracked=tracked, load_all=True)
    changes.select(*page(("g", T, "completed")))  # a page of all workflows
    workflow_page = page(
        ("g", T, "completed"),
        ("a", T - SECOND, "completed"),
        ("r", T - 2 * SECOND, "running"),
        ("t", T - 60 * SECOND, "running"),
    )
    assert changes.select(*workflow_page, workflow="w1") == [False, True, True, True]
    assert changes.select(*page(("b", T - 3 * SECOND, "failed")), workflow="w1") == [True]

    assert sorted(changes.forget_workflow("w1")) == ["a", "b"]
    # Kept: read on a page of all workflows, in flight when read, tracked by the warehouse.
    assert set(changes.seen) == {"g", "r", "t"}
    assert changes.runs_seen == 5
    # status=running, read last, shows the run in flight again: not loaded twice.
    assert changes.select(*page(("r", T - 2 * SECOND, "running")), in_flight_page=True) == [False]
    assert changes.forget_workflow("w1") == []
    assert changes.loaded == 5


def test_holding_back_later_versions_keeps_them_out_of_the_saved_state() -> None:
    cursor = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    state: dict[str, Any] = {
        "cursor": cursor.isoformat(),
        "recent": {"kept": to_micros(cursor), "later": to_micros(cursor)},
    }
    later = {"later": to_micros(cursor - timedelta(seconds=90))}
    hold_back(state, later, cursor_before=(cursor - timedelta(seconds=60)).isoformat())
    assert state["recent"] == {"kept": to_micros(cursor)}
    # Back to the oldest newer version, but never behind where the sync started.
    assert state["cursor"] == (cursor - timedelta(seconds=60)).isoformat()
    hold_back(state, later, cursor_before=None)
    assert state["cursor"] == (cursor - timedelta(seconds=90)).isoformat()


def test_the_cursor_stops_at_the_apis_clock_where_its_answers_give_it() -> None:
    machine_ahead = T + 3600 * SECOND
    changes = ChangeFilter(cursor=None, lag=0, read_from=machine_ahead)
    changes.use_api_clock(None)  # no Date header: this machine's clock stands
    assert changes.read_from == machine_ahead
    changes.use_api_clock(datetime(2026, 11, 1, 12, tzinfo=UTC))
    changes.select(*page(("a", T - 60 * SECOND, "completed"), ("b", T + 600 * SECOND, "failed")))
    assert changes.cursor_after() == T - SECOND  # the header counts whole seconds


@pytest.mark.parametrize(
    ("header", "read"),
    [
        ("Sun, 01 Nov 2026 12:00:00 GMT", datetime(2026, 11, 1, 12, tzinfo=UTC)),
        ("Sun, 01 Nov 2026 13:00:00 +0100", datetime(2026, 11, 1, 12, tzinfo=UTC)),
        ("Sun, 01 Nov 2026 12:00:00 -0000", None),  # no zone said
        ("yesterday", None),
        ("", None),
    ],
)
def test_the_apis_clock_is_read_from_a_date_header(header: str, read: datetime | None) -> None:
    response = httpx.Response(200, headers={"date": header} if header else {})
    assert _server_time(response) == read


def test_a_date_header_ahead_of_this_clock_does_not_move_the_cursor_further() -> None:
    changes = ChangeFilter(cursor=None, lag=0, read_from=T)
    changes.use_api_clock(datetime(2026, 11, 1, 13, tzinfo=UTC))  # an hour ahead
    changes.select(*page(("a", T + 600 * SECOND, "completed")))
    assert changes.cursor_after() == T
