"""Runs every list request a sync needs, concurrently within the rate limit, as pages."""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipelines.sixtyfour import reach, settings, shaping
from pipelines.sixtyfour.client import (
    ForbiddenError,
    NotFoundError,
    RequestRejectedError,
    RunsBody,
    SixtyfourClient,
)
from pipelines.sixtyfour.reach import Gap, PageReach, RunFilter
from pipelines.sixtyfour.shaping import PageKeys

log = logging.getLogger("sixtyfour_sync.reader")

ProgressCallback = Callable[["ReadProgress"], None]


@dataclass
class RunsPage:
    """One answered list request, its runs checked and their keys read."""

    filter: RunFilter
    runs: list[dict[str, Any]]
    keys: PageKeys

    @property
    def reach(self) -> PageReach:
        return PageReach(self.filter, len(self.runs), self.keys.oldest_queued)


@dataclass
class ReadProgress:
    """Where a read stands, for progress bars and log lines."""

    partitions_done: int = 0
    partitions_total: int = 0
    runs: int = 0
    requests: int = 0


@dataclass
class ChangeReader:
    """Reads the runs that may have changed since `watermark`, narrowing where pages are full.

    Args:
        client: the API client (its stats count the requests).
        watermark: the cursor minus the lag; None reads as deep as the API allows.
        failed_filter_supported: whether the API accepted `status=failed` before (None: unknown).
        need_workflows: read GET /workflows even when no narrowing is needed.
        known_workflows: workflow ids already loaded; a run of another one means a new
            workflow, so the workflow list is read again.
        workflows_shown: the workflow ids the first pages (newest, active) show runs of.
        on_workflow_read: called with a workflow's id once every page of it was consumed
            (after the last one's consumer had it) and none is left to read.
    """

    client: SixtyfourClient
    watermark: datetime | None
    failed_filter_supported: bool | None = None
    need_workflows: bool = False
    known_workflows: set[str] = field(default_factory=set)
    concurrency: int = 4
    on_progress: ProgressCallback | None = None
    on_workflow_read: Callable[[str], None] | None = None
    workflows: list[dict[str, Any]] | None = None
    workflows_shown: set[str] = field(default_factory=set)
    gaps: list[Gap] = field(default_factory=list)
    progress: ReadProgress = field(default_factory=ReadProgress)
    _workflow_reach: dict[str, PageReach] = field(default_factory=dict)
    _pages_read: dict[RunFilter, int] = field(default_factory=dict)
    _unread: Counter[str] = field(default_factory=Counter)  # workflow -> its filters to read
    # workflow -> its status filters of ended runs, sent once its active page has answered
    _after_active: dict[str, list[RunFilter]] = field(default_factory=dict)

    def pages(self) -> Iterator[RunsPage]:
        """Yield pages as they arrive: the newest and the active runs first, then partitions."""
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            first = [RunFilter(), RunFilter(status="active")]
            newest: RunsPage | None = None
            for page in self._gather(pool, first):
                newest = page if page.filter == first[0] else newest
                self.workflows_shown.update(page.keys.workflow_ids)
                yield page
            new_workflow = not self.workflows_shown <= self.known_workflows
            assert newest is not None
            narrow = not newest.reach.reaches(self.watermark)
            if narrow or new_workflow or self.need_workflows:
                self.workflows = self.client.list_workflows()
            if narrow:
                listed = reach.workflows_to_read(self.workflows or [], self.watermark)
                # A workflow the newest page shows runs of, yet the list leaves out (or calls
                # idle): the list lags or hides it, and its older runs would go unread.
                unlisted = set(newest.keys.workflow_ids).difference(listed)
                if unlisted:
                    log.info(
                        "%d workflows on the newest page are missing from GET /workflows or "
                        "listed as idle: read too",
                        len(unlisted),
                    )
                targets = [RunFilter(workflow_id=w) for w in [*listed, *sorted(unlisted)]]
                log.info("newest page is full: reading %d workflows one by one", len(targets))
                yield from self._gather(pool, targets)

    def follow_up_pages(self, unseen: Callable[[], Mapping[str, Any]]) -> Iterator[RunsPage]:
        """Pages that may show runs stored as in flight that no page has shown yet.

        Args:
            unseen: job_id -> workflow_id of those runs, asked again after each round.

        A full active page may have cut off older runs still in flight: `status=running`
        shows them. A run that ended and fell out of the newest 500 overall is often still
        among its workflow's newest 500, which also carries its final metrics; where that
        page is full, among its workflow's newest runs of a status a run ends in. What
        remains after that is read by id.
        """
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            running = RunFilter(status="running")
            active_full = self._pages_read.get(RunFilter(status="active"), 0) >= settings.PAGE_LIMIT
            if active_full and running not in self._pages_read and unseen():
                yield from self._gather(pool, [running], narrow=False)

            def unseen_workflows() -> set[str]:
                return {w for w in unseen().values() if isinstance(w, str)}

            targets = [RunFilter(workflow_id=w) for w in sorted(unseen_workflows())]
            targets = [f for f in targets if f not in self._pages_read]
            yield from self._gather(pool, targets, narrow=False)
            # A full workflow page can cut off a run that ended long after it was queued;
            # the workflow's pages of the statuses a run ends in may still show it, with its
            # error and metrics, which live_status does not carry.
            ended = [s for s in reach.status_filters(self.failed_filter_supported) if s != "active"]
            full = sorted(
                w
                for w in unseen_workflows()
                if self._pages_read.get(RunFilter(workflow_id=w), 0) >= settings.PAGE_LIMIT
            )
            targets = [RunFilter(w, status) for w in full for status in ended]
            targets = [f for f in targets if f not in self._pages_read]
            yield from self._gather(pool, targets, narrow=False)

    def _gather(
        self, pool: ThreadPoolExecutor, filters: Sequence[RunFilter], narrow: bool = True
    ) -> Iterator[RunsPage]:
        # Requests go out only while fewer than `concurrency` pages are on their way or
        # waiting to be consumed: the pages of a backfill never pile up in memory.
        waiting: deque[RunFilter] = deque(filters)
        pending: dict[Future[RunsBody | None], RunFilter] = {}
        self.progress.partitions_total += len(filters)
        self._count_unread(filters)
        while waiting or pending:
            while waiting and len(pending) < max(1, self.concurrency):
                run_filter = waiting.popleft()
                pending[pool.submit(self._read, run_filter)] = run_filter
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                run_filter = pending.pop(future)
                self.progress.partitions_done += 1
                # A narrowed workflow's pages of ended statuses wait for its active page.
                ended: list[RunFilter] = []
                if run_filter.status == "active" and run_filter.workflow_id:
                    ended = self._after_active.pop(run_filter.workflow_id, [])
                try:
                    answer = future.result()
                except RequestRejectedError:
                    if run_filter.status not in settings.UNDOCUMENTED_STATUS_FILTERS:
                        raise
                    self._status_filter_refused(run_filter)
                    self._read_one(run_filter)
                    continue
                if answer is None:  # 403 or 404: recorded as a gap or skipped, not asked again
                    # The same answer would come for the workflow's other statuses.
                    for skipped in [run_filter, *ended]:
                        self._pages_read[skipped] = 0
                        self._read_one(skipped)
                    self.progress.partitions_done += len(ended)
                    continue
                waiting.extendleft(reversed(ended))
                runs = answer.parse()  # here, not on the fetching thread: see fetch_runs
                self._pages_read[run_filter] = len(runs)
                if run_filter.status in settings.UNDOCUMENTED_STATUS_FILTERS:
                    self.failed_filter_supported = True
                self.progress.runs += len(runs)
                if self.on_progress:
                    self.progress.requests = self.client.stats.api_requests
                    self.on_progress(self.progress)
                where = f"/workflows/runs ({run_filter.describe()})"
                page = RunsPage(run_filter, runs, shaping.page_keys(runs, where))
                if narrow and run_filter.workflow_id:
                    narrower = self._narrow(page)
                    self.progress.partitions_total += len(narrower)
                    self._count_unread(narrower)
                    # Runs only leave `active`, for an ended status: read after the active
                    # page, the pages of ended statuses show every run that left it between
                    # the two. Read before it, a run ending in between would be on neither.
                    active = [f for f in narrower if f.status == "active"]
                    if active:
                        self._after_active[run_filter.workflow_id] = [
                            f for f in narrower if f.status != "active"
                        ]
                        narrower = active
                    waiting.extendleft(reversed(narrower))
                yield page
                self._read_one(run_filter)

    def _count_unread(self, filters: Sequence[RunFilter]) -> None:
        self._unread.update(f.workflow_id for f in filters if f.workflow_id)

    def _read_one(self, run_filter: RunFilter) -> None:
        """Count a filter as read; say so when it was its workflow's last."""
        workflow = run_filter.workflow_id
        if not workflow:
            return
        self._unread[workflow] -= 1
        if self._unread[workflow] <= 0:
            del self._unread[workflow]
            if self.on_workflow_read:
                self.on_workflow_read(workflow)

    def _read(self, run_filter: RunFilter) -> RunsBody | None:
        try:
            return self.client.fetch_runs(
                status=run_filter.status, workflow_id=run_filter.workflow_id
            )
        except NotFoundError:
            if not run_filter.workflow_id:
                raise  # the list endpoint itself is missing: a wrong base_url
            # The workflow was deleted between listing and reading: nothing left to reach.
            log.info("%s: the API no longer knows this workflow; skipped", run_filter.describe())
            return None
        except ForbiddenError:
            if not run_filter.workflow_id:
                raise
            # The key may not see this workflow: its runs are out of reach, and that is a gap.
            self.gaps.append(
                Gap(run_filter, self.watermark, None, "the API key may not see this workflow")
            )
            return None

    def _narrow(self, page: RunsPage) -> list[RunFilter]:
        """The narrower filters a page needs, recording gaps where none is left."""
        page_reach = page.reach
        if page_reach.reaches(self.watermark):
            return []
        if page.filter.status is not None:
            self.gaps.append(
                reach.gap_for(page_reach, self.watermark, "500 runs, the narrowest filter")
            )
            return []
        self._workflow_reach[page.filter.workflow_id or ""] = page_reach
        statuses = reach.status_filters(self.failed_filter_supported)
        if "failed" not in statuses:
            self._status_filter_refused(RunFilter(page.filter.workflow_id, "failed"))
        return [RunFilter(page.filter.workflow_id, status) for status in statuses]

    def _status_filter_refused(self, run_filter: RunFilter) -> None:
        """Without status=failed, the workflow's failed runs past its newest 500 are hidden."""
        self.failed_filter_supported = False
        page_reach = self._workflow_reach.get(run_filter.workflow_id or "")
        if page_reach is None:
            return  # a follow-up of runs that ended: what no list shows is read by id
        self.gaps.append(
            reach.Gap(
                run_filter,
                self.watermark,
                page_reach.oldest_queued,
                "the API refuses status=failed; failed runs past the newest 500 are hidden",
            )
        )
