"""The status command's facts, read from the warehouse (the ledger and the runs)."""

from __future__ import annotations

from typing import Any

from dlt.pipeline.pipeline import Pipeline

from pipelines import warehouse
from pipelines.config import WarehouseSettings
from pipelines.runner import connection_failure, opened

_IN_FLIGHT_SQL = (
    "select count(*) as n from {dataset}.workflow_runs where status in "
    f"({warehouse.IN_FLIGHT_LIST})"
)
# A gap stays open until a sync that read as deep as the API allows (a backfill, or a first
# sync) found none: an incremental sync reads on from its cursor and does not look back at
# what an earlier one could not reach. The sync_health view applies the same rule.
_OPEN_GAPS_SQL = """
    select gap.gap_detail from {dataset}.sync_runs as gap
    where gap.status = 'gap' and not exists (
        select 1 from {dataset}.sync_runs as later
        where later.status = 'ok'
          and (later.mode = 'backfill' or later.cursor_before is null)
          and later.started_at > gap.started_at)
    order by gap.started_at desc limit 1
"""
# The newest cursor any sync left, however many failed syncs came since.
_CURSOR_SQL = """
    select cursor_after from {dataset}.sync_runs
    where cursor_after is not null order by started_at desc limit 1
"""


def read_status(pipeline: Pipeline, warehouse_settings: WarehouseSettings) -> dict[str, Any]:
    """Cursor, runs in flight, detail backlog, the last syncs and any open gap.

    Raises:
        SyncError: the warehouse's server refused the connection or was not reached.
    """
    if warehouse_settings.duckdb_path is not None and not warehouse_settings.duckdb_path.exists():
        # No sync made it yet; opening it would leave an empty file behind.
        return {"cursor": None, "in_flight": 0, "details_waiting": 0, "open_gap": None, "syncs": []}
    try:
        with opened(pipeline.sql_client(), warehouse_settings) as client:
            syncs = warehouse.last_syncs(client, 10)
            in_flight = warehouse.query(client, _IN_FLIGHT_SQL)
            _, waiting = warehouse.detail_backlog(client, 1)
            gaps = warehouse.query(client, _OPEN_GAPS_SQL)
            cursors = warehouse.query(client, _CURSOR_SQL)
    except Exception as exc:
        failure = connection_failure(exc, warehouse_settings.destination)
        if failure is None:
            raise
        raise failure from None
    open_gap = gaps[0]["gap_detail"] if gaps else None
    cursor = cursors[0]["cursor_after"] if cursors else None
    return {
        "cursor": cursor.isoformat() if cursor else None,
        "in_flight": int(in_flight[0]["n"]) if in_flight else 0,
        "details_waiting": waiting,
        "open_gap": open_gap,
        "syncs": syncs,
    }
