"""What a sync reads back from the warehouse: runs in flight, the detail backlog, the ledger."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from dlt.common.destination.exceptions import DestinationUndefinedEntity
from dlt.destinations.exceptions import DatabaseUndefinedRelation
from dlt.destinations.sql_client import SqlClientBase

from pipelines.sixtyfour import settings
from pipelines.sixtyfour.changes import TrackedRun
from pipelines.sixtyfour.timestamps import to_micros

IN_FLIGHT_LIST = ", ".join(f"'{s}'" for s in sorted(settings.IN_FLIGHT_STATUSES))
_TERMINAL = ", ".join(f"'{s}'" for s in sorted(settings.TERMINAL_STATUSES))


Client = SqlClientBase[Any]


def ledger_columns(client: Client) -> set[str]:
    """The sync_runs table's columns, lower-cased; none when it does not exist yet.

    Asked before the ledger row is appended without dlt: a missing table, or a column an
    older version did not have, is left for dlt to add (and a failed statement would spoil a
    PostgreSQL transaction).
    """
    text = f"select * from {client.make_qualified_table_name('sync_runs')} where 1 = 0"
    try:
        with client.execute_query(text) as cursor:
            # Lower-cased: a warehouse that folds names to upper case reports them so.
            return {column[0].lower() for column in cursor.description or ()}
    except (DatabaseUndefinedRelation, DestinationUndefinedEntity):
        return set()


def query(client: Client, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Rows of a query on the dataset as dicts; no rows when a table is missing.

    `{dataset}` in the text is replaced by the dataset's qualified name. The client is an
    open `pipeline.sql_client()`, shared by the reads of one sync.
    """
    text = sql.replace("{dataset}", client.fully_qualified_dataset_name())
    try:
        with client.execute_query(text, *args) as cursor:
            if cursor.description is None:
                return []
            names = [c[0] for c in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    except (DatabaseUndefinedRelation, DestinationUndefinedEntity):
        return []


def tracked_runs(client: Client) -> list[TrackedRun]:
    """Runs the warehouse holds as queued or running, with their whole stored rows."""
    rows = query(
        client, f"select * from {{dataset}}.workflow_runs where status in ({IN_FLIGHT_LIST})"
    )
    return [
        TrackedRun(
            job_id=row["job_id"],
            status=row["status"],
            updated_at=to_micros(_aware(row["updated_at"])),
            row=row,
        )
        for row in rows
    ]


def detail_backlog(client: Client, limit: int) -> tuple[list[str], int]:
    """Finished runs without block detail, oldest first (at most `limit`), and how many in all."""
    if limit <= 0:
        return [], 0
    without_detail = f"""
        from {{dataset}}.workflow_runs as r
        where r.status in ({_TERMINAL})
          and not exists (
            select 1 from {{dataset}}.workflow_run_details as d where d.job_id = r.job_id)
    """
    try_details = query(client, "select count(*) as n from {dataset}.workflow_run_details")
    if not try_details:
        # No detail read yet: every finished run waits.
        without_detail = f"from {{dataset}}.workflow_runs as r where r.status in ({_TERMINAL})"
    rows = query(
        client,
        f"select r.job_id {without_detail} "
        f"order by coalesce(r.completed_at, r.updated_at), r.job_id limit {int(limit)}",
    )
    total = query(client, f"select count(*) as n {without_detail}")
    return [row["job_id"] for row in rows], int(total[0]["n"]) if total else 0


def tables_without_rows(client: Client, tables: Sequence[str]) -> frozenset[str]:
    """The given tables that are missing or hold no row."""
    return frozenset(
        table for table in tables if not query(client, f"select 1 from {{dataset}}.{table} limit 1")
    )


# Each table's key, and which of the rows that share one is kept (duplicates that a reloaded
# file leaves are equal; otherwise the newest wins).
_NEWEST_FIRST = {
    "workflow_runs": "updated_at desc",
    "workflow_run_details": "fetched_at desc",
    "workflows": "updated_at desc",
}
TABLE_KEYS: dict[str, tuple[str, str | None]] = {
    **{
        table: (", ".join(key), _NEWEST_FIRST.get(table))
        for table, key in settings.PRIMARY_KEYS.items()
    },
    "sync_runs": ("sync_id", None),  # the ledger is appended: its rows name their sync
}


def keep_one_row_per_key(client: Client, table: str) -> int:
    """Remove rows that repeat a key of `table` (DuckDB and PostgreSQL); how many keys were.

    A load killed after a file's rows landed but before dlt recorded the file as done
    loads that file again when resumed: appended rows, or staged rows that the merge is
    told are distinct, then land twice.
    """
    key, newest_first = TABLE_KEYS[table]
    rows = query(
        client,
        f"select count(*) as n from (select {key} from {{dataset}}.{table} "
        f"group by {key} having count(*) > 1) as repeated",
    )
    repeated = int(rows[0]["n"]) if rows else 0
    if not repeated:
        return 0
    qualified = client.make_qualified_table_name(table)
    order = f"{key}, {newest_first}" if newest_first else key
    with client.begin_transaction():
        client.execute_sql(
            f"create temporary table sixtyfour_kept as select distinct on ({key}) * "
            f"from {qualified} order by {order}"
        )
        client.execute_sql(f"delete from {qualified}")
        client.execute_sql(f"insert into {qualified} select * from sixtyfour_kept")
        client.execute_sql("drop table sixtyfour_kept")
    return repeated


def last_syncs(client: Client, count: int) -> list[dict[str, Any]]:
    """The newest ledger rows."""
    return query(
        client,
        f"select * from {{dataset}}.sync_runs order by started_at desc limit {int(count)}",
    )


def table_counts(client: Client, tables: Sequence[str]) -> dict[str, int]:
    """Row counts of the given tables (missing tables are left out)."""
    counts: dict[str, int] = {}
    for table in tables:
        rows = query(client, f"select count(*) as n from {{dataset}}.{table}")
        if rows:
            counts[table] = int(rows[0]["n"])
    return counts


def _aware(value: datetime) -> datetime:
    from datetime import UTC

    return value if value.tzinfo else value.replace(tzinfo=UTC)
