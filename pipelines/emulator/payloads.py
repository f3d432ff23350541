"""How runs and workflows are served: payloads, canonical records, metrics, blocks, live status.

Metrics, outcome and blocks are derived from a run's seed and status, so they change exactly
when its status (and updated_at) does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from .records import (
    CANCELLED,
    COMPLETED,
    COMPLETED_AT,
    CREATED,
    FAILED,
    QUEUED,
    QUEUED_AT,
    RUNNING,
    STARTED,
    TERMINAL,
    UPDATED,
    Run,
    Workflow,
    format_us,
    to_datetime,
)

Stamp = Callable[[Run, int, int | None], Any]


def run_payload(run: Run) -> bytes:
    """The run's JSON as the list endpoint serves it, cached until the run changes."""
    if run.cached is None:
        # Copied to its exact size: orjson's result keeps spare capacity, which made the
        # cache of a 200,000-run world take 1.6 GB instead of 0.3 GB.
        run.cached = bytes(memoryview(orjson.dumps(_record(run, Run.stamp))))
    return run.cached


def canonical_record(run: Run) -> dict[str, Any]:
    """The run with the payload's keys, timestamps as aware UTC datetimes."""
    return _record(run, lambda _run, _field, us: None if us is None else to_datetime(us))


def _record(run: Run, stamp: Stamp) -> dict[str, Any]:
    workflow = run.workflow
    reason, error = outcome(run.status, run.mseed)
    duration = None
    if run.status in TERMINAL and run.started is not None and run.completed is not None:
        duration = (run.completed - run.started) // 1000
    record: dict[str, Any] = {
        "job_id": run.job_id,
        "workflow_id": workflow.id,
        "status": run.status,
        "workflow_name": workflow.name,
        "step": workflow.step,
        "user_id": workflow.user_uuid,
        "created_at": stamp(run, CREATED, run.created),
        "updated_at": stamp(run, UPDATED, run.updated),
        "queued_at": stamp(run, QUEUED_AT, run.queued),
        "started_at": stamp(run, STARTED, run.started),
        "completed_at": stamp(run, COMPLETED_AT, run.completed),
        "duration_ms": duration,
        "status_reason": reason,
        "error_message": error,
        "metrics": run_metrics(run.status, run.mseed),
        "blocks": list_blocks(run) if run.has_blocks else None,
        "blocks_count": len(workflow.block_ids),
    }
    if run.extra:
        record.update(run.extra)
    return record


def workflow_payload(workflow: Workflow, latest: Run | None) -> dict[str, Any]:
    """A workflow as GET /workflows serves it; `latest` is its newest-queued run."""
    return {
        "id": workflow.id,
        "user_uuid": workflow.user_uuid,
        "org_id": workflow.org_id,
        "name": workflow.name,
        "description": workflow.description,
        "status": workflow.status,
        "step": workflow.step,
        "created_at": format_us(workflow.created),
        "updated_at": format_us(workflow.updated),
        "last_run_date": None if latest is None else latest.stamp(QUEUED_AT, latest.queued),
        "workflow_definition": None,
    }


_FAILURES = (
    ("provider_timeout", "Enrichment provider timed out after 120 s"),
    ("insufficient_credits", "Insufficient credits to continue this run"),
    ("invalid_input", "Input column 'email' was not found in the uploaded file"),
    ("block_error", "Block raised an error: upstream service answered 500"),
)


def outcome(status: str, mseed: int) -> tuple[str | None, str | None]:
    """status_reason and error_message for a run in `status`."""
    if status == FAILED:
        return _FAILURES[(mseed >> 50) % len(_FAILURES)]
    if status == CANCELLED:
        return "cancelled_by_user", None
    if status == QUEUED:
        return "waiting_for_worker", None
    return None, None


def rows_in(mseed: int) -> int:
    """How many input rows a run processes."""
    return 10 + mseed % 4991


def run_metrics(status: str, mseed: int) -> dict[str, Any] | None:
    """Aggregate metrics of a run; they only change when its status does."""
    if status == QUEUED:
        return None
    rows = rows_in(mseed)
    bits = mseed >> 13
    if status == COMPLETED:
        rows_out = rows * (50 + bits % 51) // 100
    elif status == RUNNING:
        rows_out = 0
    else:
        rows_out = rows * (bits % 50) // 100
    llm = round(rows_out * ((bits >> 7) % 40 + 1) / 10_000, 4)
    enrichment = round(rows_out * ((bits >> 13) % 20) / 10_000, 4)
    total = round(llm + enrichment, 4)
    metrics: dict[str, Any] = {
        "row_count": rows,
        "rows_in": rows,
        "rows_out": rows_out,
        "costs": {"llm_usd": llm, "enrichment_usd": enrichment, "total_usd": total},
        "credits_used": rows_out // 40 + (1 if rows_out else 0),
    }
    # Metrics keys are undocumented; a few runs carry the odd non-numeric value.
    quirk = (mseed >> 40) % 50
    if quirk == 0:
        metrics["row_count"] = "unknown"
    elif quirk == 1:
        metrics["note"] = "partial"
    elif quirk == 2:
        metrics["cached"] = True
    return metrics


def list_blocks(run: Run) -> list[dict[str, Any]]:
    """The short per-block detail a few runs carry in list payloads.

    Taken at the run's last transition, so it only changes when updated_at does.
    """
    rows = rows_in(run.mseed)
    return [
        {
            "block_id": block.block_id,
            "block_name": block.name,
            "sequence_number": block.sequence,
            "status": block.status,
            "processed_count": int(rows * block.fraction),
            "total_count": rows,
        }
        for block in block_timeline(run, run.updated)
    ]


@dataclass(slots=True)
class BlockState:
    """Where one block of a run stands at a given moment."""

    block_id: str
    name: str
    sequence: int
    status: str
    started: int | None
    completed: int | None
    fraction: float


def block_timeline(run: Run, at: int) -> list[BlockState]:
    """The state of each block of `run` at instant `at`.

    The run's time from start to finish is shared among its blocks by fixed per-run weights;
    a failed or cancelled run stops inside one block and never reaches the later ones.
    """
    ids, names = run.workflow.block_ids, run.workflow.block_names
    count = len(ids)
    states = [BlockState(ids[i], names[i], i + 1, "pending", None, None, 0.0) for i in range(count)]
    if run.started is None or count == 0:
        return states
    last = count - 1
    if run.status in (FAILED, CANCELLED):
        last = (run.mseed >> 24) % count
    end = run.completed if run.completed is not None else run.plan_end
    if end is None or end <= run.started:
        end = run.started + 1
    weights = [1 + ((run.mseed >> (3 * i)) & 7) for i in range(last + 1)]
    total, done, span = sum(weights), 0, end - run.started
    for i, weight in enumerate(weights):
        begin = run.started + span * done // total
        done += weight
        finish = run.started + span * done // total
        state = states[i]
        if at < begin:
            break
        state.started = begin
        if at >= finish and not (i == last and run.status in (FAILED, CANCELLED)):
            state.status, state.completed, state.fraction = COMPLETED, finish, 1.0
        elif run.status in (FAILED, CANCELLED) and run.completed is not None:
            # The block the run stopped in got part of the way through its rows.
            state.status, state.completed = run.status, run.completed
            state.fraction = (5 + (run.mseed >> 30) % 90) / 100
        else:
            state.status = RUNNING
            state.fraction = round((at - begin) / max(finish - begin, 1), 4)
    return states


def _iso(us: int | None) -> str | None:
    # live_status declares no timestamp format; it gets plain UTC ISO-8601 text.
    return None if us is None else format_us(us)


def live_status(run: Run, now: int) -> dict[str, Any]:
    """What GET /workflows/runs/{run_id}/live_status answers for `run` at instant `now`.

    Deterministic for a run and an instant: a running run progresses with the clock, any
    other run reads the same until it changes.
    """
    states = block_timeline(run, now)
    rows = rows_in(run.mseed)
    _reason, error = outcome(run.status, run.mseed)
    dataframe_type = "polars" if run.mseed & 1 else "pandas"
    current = next((state for state in states if state.status == RUNNING), None)
    completed_blocks = sum(1 for state in states if state.status == COMPLETED)
    total = len(states)
    if run.status == COMPLETED:
        progress = 100.0
    elif run.status == QUEUED or total == 0:
        progress = 0.0
    else:
        partial = current.fraction if current is not None else 0.0
        progress = round(100 * (completed_blocks + partial) / total, 1)
    blocks = []
    for index, state in enumerate(states):
        processed = int(rows * state.fraction)
        running = state.status == RUNNING
        blocks.append(
            {
                "block_id": state.block_id,
                "block_name": state.name,
                "sequence_number": state.sequence,
                "previous_block_ids": [states[index - 1].block_id] if index else [],
                "status": state.status,
                "started_at": _iso(state.started),
                "completed_at": _iso(state.completed),
                "last_updated": _iso(now if running else state.completed or state.started),
                "progress_percentage": round(100 * state.fraction, 1),
                "current_step": "processing rows" if running else None,
                "processed_count": processed,
                "total_count": rows,
                "estimated_total_count": rows,
                "error_message": error if state.status == FAILED else None,
                "metrics": {
                    "row_count": processed,
                    "dataframe_type": dataframe_type,
                    "processed_count": processed,
                    "total_count": rows,
                },
            }
        )
    return {
        "run_id": run.job_id,
        "workflow_id": run.workflow.id,
        "overall_status": run.status,
        "last_updated": _iso(now if run.status == RUNNING else run.updated),
        "current_block": current.name if current is not None else None,
        "current_block_sequence": current.sequence if current is not None else None,
        "total_blocks": total,
        "completed_blocks": completed_blocks,
        "started_at": _iso(run.started),
        "completed_at": _iso(run.completed),
        "overall_progress_percentage": progress,
        "estimation_blocked_by": "waiting_for_worker" if run.status == QUEUED else None,
        "blocks": blocks,
    }
