"""The status command's facts, read from the pipeline state and the warehouse."""

from __future__ import annotations

from typing import Any

from dlt.pipeline.pipeline import Pipeline

from pipelines import warehouse

_IN_FLIGHT_SQL = (
    "select count(*) as n from {dataset}.workflow_runs where status in ('queued', 'running')"
)


def read_status(pipeline: Pipeline) -> dict[str, Any]:
    """Cursor, runs in flight, detail backlog, the last syncs and any open gap."""
    with pipeline.sql_client() as client:
        syncs = warehouse.last_syncs(client, 10)
        in_flight = warehouse.query(client, _IN_FLIGHT_SQL)
        _, waiting = warehouse.detail_backlog(client, 1)
    completed = [s for s in syncs if s["status"] in ("ok", "gap")]
    open_gap = completed[0]["gap_detail"] if completed and completed[0]["status"] == "gap" else None
    cursor = syncs[0]["cursor_after"] if syncs else None
    for sync in syncs:
        if sync["cursor_after"] is not None:
            cursor = sync["cursor_after"]
            break
    return {
        "cursor": cursor.isoformat() if cursor else None,
        "in_flight": int(in_flight[0]["n"]) if in_flight else 0,
        "details_waiting": waiting,
        "open_gap": open_gap,
        "syncs": syncs,
    }
