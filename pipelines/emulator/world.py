"""The emulated organisation: workflows, their runs, and a clock that moves them along.

Everything derives from one `random.Random(seed)`, so two worlds built from one config and
driven by the same calls serve byte-identical payloads.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from . import draws
from .index import ACTIVE, Catalog
from .payloads import canonical_record, live_status, run_payload, workflow_payload
from .records import (
    CANCELLED,
    COMPLETED,
    IN_FLIGHT,
    QUEUED,
    RUNNING,
    STATUSES,
    Run,
    Workflow,
    to_datetime,
    to_us,
)

SECOND = draws.SECOND
HOUR = 3600 * SECOND


@dataclass(frozen=True)
class WorldConfig:
    """How big the emulated history is and where its clock starts."""

    seed: int = 7
    workflows: int = 12
    runs: int = 2000
    span_days: float = 30
    in_flight_share: float = 0.03
    blocks_share: float = 0.02
    now: datetime = datetime(2026, 11, 1, 12, tzinfo=UTC)


class UnknownWorkflow(KeyError):
    """A workflow id the organisation does not have."""


class World:
    """Workflows and runs of one organisation, with a clock. Thread-safe: one lock guards all."""

    def __init__(self, config: WorldConfig | None = None) -> None:
        self.config = config or WorldConfig()
        self._rng = random.Random(self.config.seed)
        self._lock = threading.RLock()
        self._now = to_us(self.config.now)
        self._seq = 0
        self._runs: dict[str, Run] = {}
        self._workflows: dict[str, Workflow] = {}
        self._catalog = Catalog()
        self._generate()

    # -- reading ------------------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        """The world's clock, as an aware UTC datetime."""
        return to_datetime(self._now)

    def runs(self) -> list[dict[str, Any]]:
        """Canonical records of all runs, newest queued first.

        Same keys as the payload; timestamps are aware UTC datetimes, metrics and blocks
        Python objects.
        """
        with self._lock:
            return [canonical_record(run) for run in self._catalog.view(None, None)]

    def payload(self, job_id: str) -> dict[str, Any]:
        """Exactly what the list endpoint serves for one run."""
        with self._lock:
            return dict(orjson.loads(run_payload(self._runs[job_id])))

    def live_status(self, job_id: str) -> dict[str, Any]:
        """The live_status answer for one run at the world's current time (KeyError if unknown)."""
        with self._lock:
            return live_status(self._runs[job_id], self._now)

    def workflows(self) -> list[dict[str, Any]]:
        """What GET /workflows serves."""
        with self._lock:
            return [
                workflow_payload(workflow, next(iter(self._catalog.view(workflow.id, None)), None))
                for workflow in self._workflows.values()
            ]

    def in_flight(self) -> list[str]:
        """Job ids of queued and running runs, newest queued first."""
        with self._lock:
            return [run.job_id for run in self._catalog.view(None, ACTIVE)]

    def runs_json(
        self, status: str | None = None, workflow_id: str | None = None, limit: int = 100
    ) -> bytes:
        """The list endpoint's body: newest-queued runs of a selection, at most `limit`.

        Args:
            status: a run status, "active" (queued + running) or None for all.
            workflow_id: only this workflow's runs; raises UnknownWorkflow if there is none.
            limit: how many runs at most.
        """
        with self._lock:
            if workflow_id is not None and workflow_id not in self._workflows:
                raise UnknownWorkflow(workflow_id)
            page = self._catalog.view(workflow_id, status)[:limit]
            return b"[" + b",".join([run_payload(run) for run in page]) + b"]"

    def workflows_json(self) -> bytes:
        """The body of GET /workflows."""
        return orjson.dumps(self.workflows())

    # -- moving the clock ---------------------------------------------------------------------

    def advance(
        self, seconds: float, new_runs: int = 0, workflow_id: str | None = None
    ) -> list[str]:
        """Move the clock forward; in-flight runs start and finish as planned inside the interval.

        Args:
            seconds: how far to move the clock.
            new_runs: runs to enqueue at times spread over the interval; they too may start
                and finish before it ends.
            workflow_id: the workflow of the new runs (default: random workflows).

        Returns:
            The job ids of the new runs.
        """
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            start = self._now
            end = start + round(seconds * SECOND)
            created = self._create(new_runs, start, end, workflow_id, QUEUED, None)
            for run in list(self._catalog.view(None, ACTIVE)):
                self._progress(run, end)
            self._now = end
            return created

    def _progress(self, run: Run, until: int) -> None:
        """Carry out whatever of an in-flight run's plan falls at or before `until`."""
        if run.status == QUEUED and run.plan_start is not None and run.plan_start <= until:
            self._transition(run, RUNNING, run.plan_start)
            run.plan_start = None
        if run.plan_end is not None and run.plan_end <= until and run.final is not None:
            self._transition(run, run.final, run.plan_end)

    # -- test helpers -------------------------------------------------------------------------

    def add_runs(
        self,
        n: int,
        workflow_id: str | None = None,
        status: str = COMPLETED,
        queued_between: tuple[datetime, datetime] | None = None,
    ) -> list[str]:
        """Create `n` runs directly in `status`, queued inside `queued_between`.

        Args:
            n: how many runs.
            workflow_id: their workflow (default: random workflows).
            status: any run status; terminal runs finish at or before now, with updated_at
                set to their completion; in-flight runs get a plan for `advance`.
            queued_between: (start, end) of their queued_at; default the last hour.

        Returns:
            The new job ids, oldest queued first.
        """
        if status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        with self._lock:
            start, end = self._now - HOUR, self._now
            if queued_between is not None:
                start, end = to_us(queued_between[0]), to_us(queued_between[1])
            if not start <= end <= self._now:
                raise ValueError("queued_between must be (start, end) with start <= end <= now")
            return self._create(n, start, end, workflow_id, status, self._now)

    def set_status(self, job_id: str, status: str, at: datetime | None = None) -> None:
        """Move a run to `status` now (or at `at`), updating its timestamps and metrics.

        queued_at stays as it is; a run moved to queued or running gets a fresh plan.
        """
        if status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        with self._lock:
            run = self._runs[job_id]
            moment = self._now if at is None else to_us(at)
            self._transition(run, status, moment)
            if status in IN_FLIGHT:
                self._plan(run, moment)

    def set_extra_field(
        self, name: str, value: Any, job_ids: Iterable[str] | None = None, touch: bool = False
    ) -> None:
        """Serve an extra field in run payloads (and canonical records), all runs or `job_ids`.

        A name that is already a payload field overrides the served value. Nothing else
        changes unless `touch` is set, which moves updated_at to now.
        """
        with self._lock:
            ids = self._runs.keys() if job_ids is None else job_ids
            for run in [self._runs[job_id] for job_id in ids]:
                run.extra = {**(run.extra or {}), name: value}
                if touch:
                    run.updated = run.quantize(self._now)
                run.cached = None

    # -- internals ----------------------------------------------------------------------------

    def _generate(self) -> None:
        config, rng = self.config, self._rng
        org_id = draws.uuid(rng)
        users = [draws.uuid(rng) for _ in range(max(1, config.workflows // 3))]
        first = self._now - round(config.span_days * draws.DAY)
        for number in range(1, config.workflows + 1):
            workflow = draws.workflow(rng, number, org_id, rng.choice(users), first, self._now)
            self._workflows[workflow.id] = workflow
        self._workflow_list = list(self._workflows.values())
        # Uneven: some workflows run three or four times as often as others.
        weights = [rng.uniform(0.4, 1.6) for _ in range(config.workflows)]
        owners = rng.choices(self._workflow_list, weights, k=config.runs)
        in_flight_from = config.runs - round(config.runs * config.in_flight_share)
        for number, queued in enumerate(self._spread(config.runs, first, self._now)):
            run = self._new_run(owners[number], queued)
            if number < in_flight_from:
                self._settle(run, draws.final_status(rng), self._now)
            else:
                self._settle(run, QUEUED if rng.random() < 0.3 else RUNNING, self._now)
            self._insert(run)

    def _create(
        self, n: int, start: int, end: int, workflow_id: str | None, status: str, as_of: int | None
    ) -> list[str]:
        """Add `n` runs queued between start and end, in `status` as of `as_of`.

        `as_of` None means as of each run's own queue time: just enqueued.
        """
        created = []
        for queued in self._spread(n, start, end):
            run = self._new_run(self._pick_workflow(workflow_id), queued)
            self._settle(run, status, run.queued if as_of is None else as_of)
            self._insert(run)
            created.append(run.job_id)
        return created

    def _spread(self, n: int, start: int, end: int) -> list[int]:
        return sorted(start + int(self._rng.random() * (end - start)) for _ in range(n))

    def _pick_workflow(self, workflow_id: str | None) -> Workflow:
        if workflow_id is None:
            return self._rng.choice(self._workflow_list)
        if workflow_id not in self._workflows:
            raise UnknownWorkflow(workflow_id)
        return self._workflows[workflow_id]

    def _new_run(self, workflow: Workflow, queued: int) -> Run:
        rng = self._rng
        self._seq += 1
        job_id = draws.uuid(rng)
        style, mseed = rng.getrandbits(64), rng.getrandbits(64)
        has_blocks = rng.random() < self.config.blocks_share
        return Run(self._seq, job_id, workflow, queued, style, mseed, has_blocks)

    def _settle(self, run: Run, status: str, now: int) -> None:
        """Put a fresh queued run straight into `status` as of `now`, its history before it."""
        if status == QUEUED:
            self._plan(run, now)
            return
        rng = self._rng
        started = min(run.queued + draws.queue_wait(rng), now)
        if status == RUNNING:
            run.started = run.updated = run.quantize(started)
        elif status == CANCELLED and rng.random() < 0.4:  # cancelled while still queued
            run.completed = run.updated = run.quantize(started)
        else:
            run.started = run.quantize(started)
            run.completed = run.updated = run.quantize(min(started + draws.run_time(rng), now))
        run.status = status
        if status == RUNNING:
            self._plan(run, now)

    def _plan(self, run: Run, after: int) -> None:
        """Schedule when an in-flight run starts (if queued) and when it finishes, and how."""
        rng = self._rng
        run.final = draws.final_status(rng)
        wait = draws.queue_wait(rng)
        run.plan_start = None
        if run.status == QUEUED and run.final == CANCELLED and rng.random() < 0.4:
            run.plan_end = after + wait  # cancelled before it ever starts
        elif run.status == QUEUED:
            run.plan_start = after + wait
            run.plan_end = run.plan_start + draws.run_time(rng)
        else:
            run.plan_end = after + draws.run_time(rng)

    def _transition(self, run: Run, status: str, at: int) -> None:
        at = run.quantize(at)
        if status == QUEUED:
            run.started = run.completed = None
        elif status == RUNNING:
            run.started, run.completed = at, None
        else:
            if run.started is None and status != CANCELLED:
                run.started = at
            run.completed = at
            run.plan_start = run.plan_end = run.final = None
        run.updated = at
        run.cached = None
        if status != run.status:
            self._catalog.restatus(run, status)

    def _insert(self, run: Run) -> None:
        self._runs[run.job_id] = run
        self._catalog.add(run)
