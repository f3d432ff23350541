"""The status command's facts, read from the warehouse (the ledger and the runs)."""

from __future__ import annotations

from typing import Any

from dlt.pipeline.pipeline import Pipeline

from pipelines import warehouse
from pipelines.config import WarehouseSettings
from pipelines.runner import opened

_IN_FLIGHT_SQL = (
    "select count(*) as n from {dataset}.workflow_runs where status in "
    f"({warehouse.IN_FLIGHT_LIST})"
)
# Gaps stay open until a backfill that found none: a later incremental sync does not look
# back at what an earlier one could not reach.
_OPEN_GAPS_SQL = """
    select gap_detail from {dataset}.sync_runs
    where status = 'gap' and started_at > coalesce(
        (select max(started_at) from {dataset}.sync_runs where mode = 'backfill' and status = 'ok'),
        timestamp '1970-01-01 00:00:00+00')
    order by started_at desc limit 1
"""


def read_status(pipeline: Pipeline, warehouse_settings: WarehouseSettings) -> dict[str, Any]:
    """Cursor, runs in flight, detail backlog, the last syncs and any open gap."""
    with opened(pipeline.sql_client(), warehouse_settings) as client:
        syncs = warehouse.last_syncs(client, 10)
        in_flight = warehouse.query(client, _IN_FLIGHT_SQL)
        _, waiting = warehouse.detail_backlog(client, 1)
        gaps = warehouse.query(client, _OPEN_GAPS_SQL)
    open_gap = gaps[0]["gap_detail"] if gaps else None
    cursor = next((s["cursor_after"] for s in syncs if s["cursor_after"] is not None), None)
    return {
        "cursor": cursor.isoformat() if cursor else None,
        "in_flight": int(in_flight[0]["n"]) if in_flight else 0,
        "details_waiting": waiting,
        "open_gap": open_gap,
        "syncs": syncs,
    }
