"""Where a sync writes, read the dlt way: .dlt/config.toml, then environment variables."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from pipelines.sixtyfour import settings
from pipelines.sixtyfour.errors import ConfigError

REPO_DIR = Path(__file__).resolve().parent.parent
DEFAULT_DUCKDB_PATH = Path("~/.local/share/sixtyfour-sync/sixtyfour-sync.duckdb")
DUCKDB_URL_PREFIX = "duckdb:///"
# DuckDB takes up to 80% of the machine's memory by default; a cron host has other work.
# Within its limit DuckDB keeps the blocks it wrote: one thread within 64MB appended a
# 200,000-run backfill with about 70 MB on top of the sync's own memory (one table at a time
# within 16MB: about 30 MB; two at a time within the append limit below: about 55 MB). A
# merge's delete needs memory in proportion to the runs it replaces: 64MB merged the metric
# rows of 500,000 runs again (a second backfill) and failed at 1,000,000; 32MB failed at
# 300,000.
DEFAULT_DUCKDB_MEMORY_LIMIT = "64MB"
DEFAULT_DUCKDB_THREADS = 1
# Compression DuckDB does not try on what a sync writes. FSST (and its mix with a dictionary)
# compresses unique text such as job_ids; trying it on every text segment cost a 200,000-run
# backfill's load about 0.15 s of 1.05 (in interleaved runs), for a file only 10% smaller.
DUCKDB_DISABLED_COMPRESSION = "fsst,dict_fsst"
# A load that only appends (a first backfill, a full refresh) never reads back the blocks it
# wrote, so DuckDB needs little memory for it however many runs it holds; appends to different
# tables do not wait on each other, so its tables load APPEND_WORKERS at a time, each on its
# own connection and thread (the runs on one core, their metric rows on the other). A table
# that runs out beside another is tried again by dlt (`load.raise_on_max_retries` times), then
# the rest loads one table at a time within the configured limit. README "Performance" has
# the figures: 22 to 24MB needed, whatever the number of runs.
APPEND_MEMORY_LIMIT = "24MB"
APPEND_WORKERS = 2

# The units of DuckDB's memory sizes: KB, MB, ... count thousands, KiB, MiB, ... 1024s. Its
# other forms ("64 megabytes", "-1", "none") are not read: the configured limit stands then.
_SIZE_UNITS = {
    "b": 1e-6, "bytes": 1e-6, "kb": 1e-3, "mb": 1.0, "gb": 1e3, "tb": 1e6,
    "kib": 1024 / 1e6, "mib": 1024**2 / 1e6, "gib": 1024**3 / 1e6, "tib": 1024**4 / 1e6,
}  # fmt: skip
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?)\s*([a-z]*)\s*", re.IGNORECASE)


def megabytes(size: str) -> float | None:
    """A DuckDB memory size ('64MB', '1 GiB', '500kb') in megabytes; None when unreadable."""
    match = _SIZE.fullmatch(size)
    if match is None or match.group(2).lower() not in _SIZE_UNITS:
        return None
    return float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def use_project_settings() -> None:
    """Make dlt read this project's .dlt/ folder whatever the working directory.

    dlt looks for .dlt/ in the working directory; cron starts jobs in $HOME. A working
    directory with its own .dlt/ (a user's project) or DLT_PROJECT_DIR still wins.
    """
    if "DLT_PROJECT_DIR" not in os.environ and not Path(".dlt").is_dir():
        os.environ["DLT_PROJECT_DIR"] = str(REPO_DIR)


@dataclass
class WarehouseSettings:
    """The destination of a sync and how to treat it."""

    destination: str = "duckdb"
    dataset_name: str = settings.DATASET_NAME
    duckdb_path: Path | None = None
    busy_timeout_seconds: float = 60.0
    snapshot_path: Path | None = None
    duckdb_memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT
    duckdb_threads: int = DEFAULT_DUCKDB_THREADS  # 0: DuckDB's default, one per core

    def append_memory_limit(self) -> str | None:
        """The lower limit a DuckDB load that only appends runs within; None: the configured one.

        Only with one thread (each thread needs a share of the limit) and a configured limit
        that is larger and readable. An empty limit leaves DuckDB to decide, as asked.
        """
        if self.duckdb_path is None or self.duckdb_threads != 1 or not self.duckdb_memory_limit:
            return None
        configured = megabytes(self.duckdb_memory_limit)
        if configured is None or configured <= (megabytes(APPEND_MEMORY_LIMIT) or 0.0):
            return None
        return APPEND_MEMORY_LIMIT

    @classmethod
    def resolve(cls, destination: str | None = None) -> WarehouseSettings:
        """Read [sixtyfour_sync] and [destination.duckdb] (or SIXTYFOUR_SYNC__* variables)."""
        import dlt

        def setting(name: str, default: str) -> str:
            value: object = dlt.config.get(f"sixtyfour_sync.{name}")
            return default if value in (None, "") else str(value)

        chosen = destination or setting("destination", "duckdb")
        if not chosen.replace("_", "").isalnum():
            raise ConfigError(f"destination {chosen!r} is not a dlt destination name")
        duckdb_path: Path | None = None
        if chosen == "duckdb":
            configured: object = dlt.config.get("destination.duckdb.credentials")
            if configured not in (None, "") and not isinstance(configured, str):
                raise ConfigError("destination.duckdb.credentials must be a file path")
            path = str(configured or DEFAULT_DUCKDB_PATH)
            # dlt's connection-string form names the same file.
            path = path.removeprefix(DUCKDB_URL_PREFIX)
            duckdb_path = Path(path).expanduser().resolve()
        dataset_name = setting("dataset_name", settings.DATASET_NAME)
        if duckdb_path is not None and duckdb_path.stem == dataset_name:
            # DuckDB names the catalog after the file: a schema of the same name is ambiguous.
            raise ConfigError(
                f"the DuckDB file {duckdb_path.name} is named like the dataset "
                f"'{dataset_name}': choose another file name"
            )
        snapshot = setting("snapshot_path", "")
        # An empty memory limit means DuckDB's own default; a missing one, ours.
        memory_limit: object = dlt.config.get("sixtyfour_sync.duckdb_memory_limit")
        try:
            busy_timeout = float(setting("busy_timeout_seconds", "60"))
        except ValueError:
            raise ConfigError("sixtyfour_sync.busy_timeout_seconds must be a number") from None
        try:
            threads = int(setting("duckdb_threads", str(DEFAULT_DUCKDB_THREADS)))
        except ValueError:
            threads = -1
        if threads < 0:
            raise ConfigError("sixtyfour_sync.duckdb_threads must be a whole number, 0 or more")
        if duckdb_path is not None and memory_limit not in (None, ""):
            _check_memory_limit(str(memory_limit))
        return cls(
            destination=chosen,
            dataset_name=dataset_name,
            duckdb_path=duckdb_path,
            busy_timeout_seconds=busy_timeout,
            snapshot_path=Path(snapshot).expanduser().resolve() if snapshot else None,
            duckdb_memory_limit=DEFAULT_DUCKDB_MEMORY_LIMIT
            if memory_limit is None
            else str(memory_limit),
            duckdb_threads=threads,
        )


def _check_memory_limit(limit: str) -> None:
    """Refuse a DuckDB memory limit DuckDB cannot read, before a sync fetches anything.

    Raises:
        ConfigError: naming the setting, with examples of sizes it takes.
    """
    if megabytes(limit) is not None:
        return
    import duckdb

    try:
        duckdb.connect(":memory:", config={"memory_limit": limit}).close()
    except duckdb.Error:
        raise ConfigError(
            f"sixtyfour_sync.duckdb_memory_limit (SIXTYFOUR_SYNC__DUCKDB_MEMORY_LIMIT) "
            f"{limit!r} is not a size DuckDB reads, such as 64MB or 1GB"
        ) from None
