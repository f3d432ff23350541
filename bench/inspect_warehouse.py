"""What a sync left in its DuckDB file, as one JSON line (run in a child to keep the bench lean).

python bench/inspect_warehouse.py WAREHOUSE.duckdb
"""

from __future__ import annotations

import json
import sys
from typing import Any

import duckdb

DATASET = "sixtyfour"
TABLES = ("workflow_runs", "workflow_runs__metrics", "workflow_runs__blocks", "workflows")
LEDGER_COLUMNS = ("mode", "status", "api_requests", "rate_limited", "runs_seen", "runs_loaded")


def inspect(path: str) -> dict[str, Any]:
    with duckdb.connect(path, read_only=True) as db:
        existing = {
            row[0]
            for row in db.sql(
                f"select table_name from information_schema.tables where table_schema = '{DATASET}'"
            ).fetchall()
        }
        counts = {
            table: _scalar(db, f"select count(*) from {DATASET}.{table}")
            for table in TABLES
            if table in existing
        }
        distinct_runs = _scalar(db, f"select count(distinct job_id) from {DATASET}.workflow_runs")
        # Changes to any run's state show in this sum; row counts alone would miss an update.
        fingerprint = _scalar(
            db,
            f"select sum(hash(job_id, status, updated_at)) from {DATASET}.workflow_runs",
        )
        loads = _scalar(db, f"select count(*) from {DATASET}._dlt_loads")
        columns = ", ".join(LEDGER_COLUMNS)
        ledger = [
            dict(zip(LEDGER_COLUMNS, row, strict=True))
            for row in db.sql(
                f"select {columns} from {DATASET}.sync_runs order by started_at"
            ).fetchall()
        ]
    return {
        "counts": counts,
        "runs": distinct_runs,
        "runs_fingerprint": str(fingerprint),
        "dlt_loads": loads,
        "ledger": ledger,
    }


def _scalar(db: duckdb.DuckDBPyConnection, sql: str) -> Any:
    row = db.sql(sql).fetchone()
    return row[0] if row else None


if __name__ == "__main__":
    print(json.dumps(inspect(sys.argv[1]), default=str))
