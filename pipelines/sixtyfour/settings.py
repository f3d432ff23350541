"""Constants of the Sixtyfour API and the sync's defaults (no logic here)."""

from __future__ import annotations

DEFAULT_BASE_URL = "https://api.sixtyfour.ai"

# GET /workflows/runs answers at most this many runs per call and has no pagination.
PAGE_LIMIT = 500

RUNS_PATH = "/workflows/runs"
WORKFLOWS_PATH = "/workflows"
LIVE_STATUS_PATH = "/workflows/runs/{run_id}/live_status"

# Statuses the API reports, and the spellings other Sixtyfour responses use for two of them.
IN_FLIGHT_STATUSES = frozenset({"queued", "running"})
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "canceled", "succeeded"})

# Status filters that together partition one workflow's runs. `active` is queued + running.
# The API documents running/completed/cancelled/active; `failed` is not documented, so the
# sync tries it and falls back (reporting a possible gap) when the API refuses it.
NARROWING_STATUSES = ("completed", "failed", "cancelled", "active")
UNDOCUMENTED_STATUS_FILTERS = frozenset({"failed"})

# Run fields whose type the pipeline knows; anything else the API adds is kept as text.
RUN_TIMESTAMP_FIELDS = ("created_at", "updated_at", "queued_at", "started_at", "completed_at")
RUN_TEXT_FIELDS = (
    "job_id",
    "workflow_id",
    "status",
    "workflow_name",
    "step",
    "user_id",
    "status_reason",
    "error_message",
)
RUN_INTEGER_FIELDS = ("duration_ms", "blocks_count")
# Fields that go to child tables rather than columns of workflow_runs.
RUN_NESTED_FIELDS = ("metrics", "blocks")
# A run without these cannot be merged or placed in time: the sync refuses such a page.
RUN_REQUIRED_FIELDS = ("job_id", "workflow_id", "status", "updated_at", "queued_at")

WORKFLOW_TIMESTAMP_FIELDS = ("created_at", "updated_at", "last_run_date")

# Each merged table's key: what a repaired load keeps one row of, and dlt's primary key
# (the child tables' only where dlt deduplicates: see `_table_hints`).
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "workflow_runs": ("job_id",),
    "workflow_runs__metrics": ("job_id", "metric"),
    "workflow_runs__blocks": ("job_id", "block_index"),
    "workflow_run_details": ("job_id",),
    "workflows": ("id",),
}

# Runs gathered into one batch before handing them to dlt (with their metrics and blocks).
RUNS_PER_BATCH = 5_000
# Batches joined into one item for dlt, whose own work is per item (about 0.1 s less on a
# 200,000-run backfill than an item per batch).
RUNS_PER_ITEM = 20_000

# Defaults of the settings in .dlt/config.toml.
DEFAULT_LAG_SECONDS = 300.0
DEFAULT_MAX_DETAIL_REQUESTS = 100
# Syncs that try to read a finished run's block detail before it leaves the backlog unread.
DETAIL_READ_TRIES = 3
# Syncs in which a run stored in flight is unknown to the API (404) before it is no longer asked.
UNKNOWN_RUN_TRIES = 3
DEFAULT_RATE_LIMIT_PER_MINUTE = 480
DEFAULT_CONCURRENCY = 4
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_MAX_RETRIES = 6
DEFAULT_MAX_RETRY_WAIT_SECONDS = 60.0
DEFAULT_WORKFLOWS_REFRESH_HOURS = 24.0

PIPELINE_NAME = "sixtyfour"
DATASET_NAME = "sixtyfour"
