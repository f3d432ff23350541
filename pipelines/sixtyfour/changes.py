"""Which runs on the pages are new or changed since the last sync, and the cursor after.

dlt's own `incremental` would drop a run whose updated_at lies behind the cursor, but a run
stored as in flight must be updated whatever its timestamp, and the reach planner needs the
watermark before the first request; so the cursor lives here, in dlt's resource state,
which dlt commits with the load (a sync that fails to load does not move it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import compress
from typing import Any

from pipelines.sixtyfour.settings import IN_FLIGHT_STATUSES
from pipelines.sixtyfour.timestamps import from_micros, to_micros

log = logging.getLogger("sixtyfour_sync.changes")


@dataclass
class TrackedRun:
    """A run the warehouse holds as queued or running, with its stored row."""

    job_id: str
    status: str
    updated_at: int
    row: dict[str, Any]


@dataclass
class ChangeFilter:
    """Selects the runs to load from each page and keeps the cursor.

    Args:
        cursor: the highest updated_at loaded so far (microseconds), None before the first load.
        lag: how far behind the cursor runs are read again (microseconds), for late writes.
        recent: job_id -> updated_at of the runs loaded inside the lag window, so re-reading
            the window loads nothing that is already there.
        tracked: runs stored as in flight; loaded whenever their status or time differs.
        load_all: load every run read (a backfill merges all it reads).
        read_from: when the sync began reading (microseconds, by the API's clock where its
            answers say it, see `use_api_clock`, else this machine's). The cursor never
            passes it: a sync that narrows reads its partitions minutes apart,
            and a run that changed after one partition was read must stay ahead of the
            next sync's watermark. One run with a timestamp in the future cannot push the
            cursor past what later syncs must read either.

    `seen` holds the runs this sync read that may still show up on a later page: a run read
    on a workflow's pages is forgotten once that workflow has no page left to read (see
    `forget_workflow`), so a backfill's memory does not grow with the history.
    """

    cursor: int | None
    lag: int
    recent: dict[str, int] = field(default_factory=dict)
    tracked: Mapping[str, TrackedRun] = field(default_factory=dict)
    load_all: bool = False
    read_from: int | None = None
    seen: dict[str, int] = field(default_factory=dict)
    runs_seen: int = 0  # distinct runs read, forgotten ones included
    loaded: int = 0
    _max_loaded: int | None = None
    _recent_floor: int | None = None  # what `recent` keeps of this sync: the saved window
    # Runs never forgotten: read on a page of all workflows, or in flight when read.
    _kept: set[str] = field(default_factory=set)
    # workflow_id -> the runs first read on that workflow's pages.
    _by_workflow: dict[str, list[str]] = field(default_factory=dict)

    def use_api_clock(self, api_time: datetime | None) -> None:
        """Take when reading began by the API's clock (its first answer's Date header).

        The cursor is compared with the API's timestamps: with this machine's clock ahead
        of the API's by more than the lag, `read_from` would no longer hold the cursor back.
        The earlier of the two clocks is kept, so that neither a fast host nor a Date header
        running ahead (a proxy's, say) lets the cursor pass what later syncs must read; one
        second less, as the header counts whole seconds and a page is made before it is sent.
        """
        if api_time is None:
            return
        api_start = to_micros(api_time) - 1_000_000
        if self.read_from is None:
            self.read_from = api_start
            return
        skew = abs(self.read_from - api_start)
        if skew > max(self.lag, 60_000_000):
            # Not a warning: the sync reads correctly either way (the emulator's clock, for
            # one, runs weeks behind), only a host far behind re-reads a longer window.
            log.info(
                "this machine's clock and the API's differ by %.0f s: the cursor is held at "
                "the earlier one",
                skew / 1e6,
            )
        self.read_from = min(self.read_from, api_start)

    @property
    def watermark(self) -> int | None:
        return None if self.cursor is None else self.cursor - self.lag

    def select(
        self,
        job_ids: Sequence[str],
        updated: Sequence[int],
        statuses: Sequence[Any],
        in_flight_page: bool = False,
        workflow: str | None = None,
    ) -> list[bool]:
        """A mask over a page's runs (ids, updated_at in microseconds, statuses): True to load.

        A run in flight that the warehouse does not hold as in flight is loaded whatever its
        updated_at: it may have been written with an old timestamp (a late write). Every
        run on the page of runs in flight counts as in flight, whatever status it shows.
        `workflow` is the workflow the page was filtered by (None: a page of all workflows).
        """
        watermark = self.watermark
        load_all = self.load_all or watermark is None
        if load_all and self._first_sight(job_ids):
            self._load_all(job_ids, updated)
            self._remember(job_ids, statuses, workflow)
            return [True] * len(job_ids)
        floor = 0 if watermark is None else watermark
        seen, tracked_runs, recent = self.seen, self.tracked, self.recent
        mask: list[bool] = []
        first_read: list[str] = []
        first_statuses: list[Any] = []
        for job_id, updated_at, status in zip(job_ids, updated, statuses, strict=True):
            previous = seen.get(job_id)
            if previous is not None and previous >= updated_at:
                mask.append(False)  # the same run on two pages of this sync
                continue
            if previous is None:
                first_read.append(job_id)
                first_statuses.append(status)
            seen[job_id] = updated_at
            if load_all:
                chosen = True
            elif (tracked := tracked_runs.get(job_id)) is not None:
                chosen = tracked.status != status or tracked.updated_at != updated_at
            elif in_flight_page:
                chosen = True
            elif updated_at < floor:
                # Passed over here, it would count as read when the page of runs in flight
                # shows it, and stay out of the warehouse, and so untracked, until it ends:
                # by then its queued_at may be older than any page the sync reads.
                chosen = type(status) is str and status in IN_FLIGHT_STATUSES
            else:
                chosen = recent.get(job_id) != updated_at
            mask.append(chosen)
            if chosen:
                self.note_loaded(job_id, updated_at)
        self._remember(first_read, first_statuses, workflow)
        return mask

    def forget_workflow(self, workflow: str) -> list[str]:
        """Forget the runs first read on a workflow's pages, now that none is left to read.

        Only that workflow's pages and the pages of all workflows can show its runs, and the
        latter are read first, except `status=running` at the end: the runs in flight, the
        runs the warehouse tracks and those read on a page of all workflows stay. Returns
        the job_ids forgotten.
        """
        kept, tracked, seen = self._kept, self.tracked, self.seen
        forgotten = [
            job_id
            for job_id in self._by_workflow.pop(workflow, ())
            if job_id not in kept and job_id not in tracked
        ]
        for job_id in forgotten:
            seen.pop(job_id, None)
        return forgotten

    def _remember(
        self, job_ids: Sequence[str], statuses: Sequence[Any], workflow: str | None
    ) -> None:
        """Count runs read for the first time in this sync, and note what may forget them."""
        self.runs_seen += len(job_ids)
        if workflow is None:
            self._kept.update(job_ids)
            return
        self._by_workflow.setdefault(workflow, []).extend(job_ids)
        in_flight = [type(status) is str and status in IN_FLIGHT_STATUSES for status in statuses]
        if any(in_flight):
            self._kept.update(compress(job_ids, in_flight))

    def _first_sight(self, job_ids: Sequence[str]) -> bool:
        """Whether no run of the page was read before in this sync (nor twice on it)."""
        ids = set(job_ids)
        return len(ids) == len(job_ids) and self.seen.keys().isdisjoint(ids)

    def _load_all(self, job_ids: Sequence[str], updated: Sequence[int]) -> None:
        """Note a page of runs read for the first time as loaded, all at once.

        What `note_loaded` does run by run, in bulk: a backfill reads most of its runs
        once, and this is its busiest loop.
        """
        self.seen.update(zip(job_ids, updated, strict=True))
        self.loaded += len(job_ids)
        if updated:
            self._note_newest(max(updated))
        floor = self._recent_floor
        pairs = zip(job_ids, updated, strict=True)
        if floor is None:
            self.recent.update(pairs)
            return
        recent = self.recent
        for job_id, updated_at in pairs:
            if updated_at >= floor:
                recent[job_id] = updated_at
            elif recent:
                recent.pop(job_id, None)  # as in note_loaded

    def note_loaded(self, job_id: str, updated_at: int) -> None:
        """Count a run as loaded (also for runs built from live_status)."""
        self.loaded += 1
        self._note_newest(updated_at)
        if self._recent_floor is None or updated_at >= self._recent_floor:
            self.recent[job_id] = updated_at
        else:
            self.recent.pop(job_id, None)  # an older entry of it must not outlive this load

    def _note_newest(self, updated_at: int) -> None:
        """Raise the newest loaded updated_at, and with it the floor of the saved window.

        Only the lag window of the cursor is saved, and the cursor only grows: a run
        already behind it is never kept (a backfill would otherwise hold every run).
        """
        if self._max_loaded is None or updated_at > self._max_loaded:
            self._max_loaded = updated_at
            cursor = self.cursor_after()
            self._recent_floor = None if cursor is None else cursor - self.lag

    def cursor_after(self) -> int | None:
        """The cursor once this sync's runs are loaded; a backfill never moves it back."""
        if self._max_loaded is None:
            return self.cursor
        newest = self._max_loaded
        if self.read_from is not None:
            newest = min(newest, self.read_from)
        return newest if self.cursor is None else max(self.cursor, newest)

    def save(self, state: MutableMapping[str, Any]) -> None:
        """Write the cursor and the lag window's runs to the resource state."""
        cursor = self.cursor_after()
        if cursor is None:
            return
        state["cursor"] = from_micros(cursor).isoformat()
        floor = cursor - self.lag
        state["recent"] = {job: at for job, at in self.recent.items() if at >= floor}

    @classmethod
    def from_state(
        cls,
        state: Mapping[str, Any],
        lag_seconds: float,
        tracked: Mapping[str, TrackedRun],
        load_all: bool,
        read_from: int | None = None,
    ) -> ChangeFilter:
        cursor_text = state.get("cursor")
        cursor = to_micros(datetime.fromisoformat(cursor_text)) if cursor_text else None
        return cls(
            cursor=cursor,
            lag=int(lag_seconds * 1_000_000),
            recent=dict(state.get("recent") or {}),
            tracked=tracked,
            load_all=load_all,
            read_from=read_from,
        )


def hold_back(
    state: MutableMapping[str, Any], later: Mapping[str, int], cursor_before: str | None
) -> None:
    """Make a saved state claim nothing of the newer versions a later package loads.

    The runner loads the newer versions of runs that changed while a sync read them in a
    package after the sync's own (see `extract_tables`). Should the process stop between
    the two, the first package's state alone is committed: the runs in `later` (job_id ->
    updated_at in microseconds) must leave its lag-window record, and its cursor must not
    pass the oldest of them (nor go back behind `cursor_before`), so that the next sync
    reads them again.
    """
    if not later:
        return
    recent = state.get("recent") or {}
    state["recent"] = {job: at for job, at in recent.items() if job not in later}
    cursor_text = state.get("cursor")
    if not cursor_text:
        return
    cursor = min(to_micros(datetime.fromisoformat(cursor_text)), min(later.values()))
    if cursor_before:
        cursor = max(cursor, to_micros(datetime.fromisoformat(cursor_before)))
    state["cursor"] = from_micros(cursor).isoformat()
