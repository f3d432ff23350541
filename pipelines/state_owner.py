"""Which warehouse the pipeline state in DLT_DATA_DIR belongs to.

dlt keeps one state per pipeline name in DLT_DATA_DIR, whatever the destination: two
warehouses synced from one machine with the default folder share it. The cursor in it is
the last loaded warehouse's; read on from it, a sync into the other warehouse would leave
out, silently, every run that changed since that warehouse's own last sync. Each state
therefore names its warehouse, and a state of another is set aside for the one this
warehouse keeps (dlt stores the state with every load).

The name is kept in the state's local part, which dlt neither sends to the warehouse nor
resets on a full refresh (that drops the source's state, a name kept there with it). A state
from before states named their warehouse is taken as this warehouse's.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, cast

from dlt.common.pipeline import TPipelineState
from dlt.pipeline.pipeline import Pipeline

from pipelines.config import WarehouseSettings
from pipelines.sixtyfour.errors import ConfigError

log = logging.getLogger("sixtyfour_sync.state")

_OWNER = "sixtyfour_sync_warehouse"


def warehouse_key(pipeline: Pipeline, warehouse_settings: WarehouseSettings) -> str:
    """A digest naming the warehouse: destination, where it is, dataset (no secret in it)."""
    if warehouse_settings.duckdb_path is not None:
        where = str(warehouse_settings.duckdb_path.resolve())
    else:
        # dlt's credentials as text show user, host, port and database, never the password.
        where = str(pipeline.sql_client().credentials)
    named = f"{warehouse_settings.destination}\n{where}\n{warehouse_settings.dataset_name}"
    return hashlib.sha256(named.encode()).hexdigest()[:16]


def set_aside_another_warehouses_state(
    pipeline: Pipeline, key: str, repair_owed: Path | None = None
) -> None:
    """Drop the local state when it was last loaded to another warehouse.

    The caller then restores this warehouse's own state from it, as for a new DLT_DATA_DIR.

    Args:
        repair_owed: the marker of a resumed load whose doubled rows are still to be
            removed, when there is one.

    Raises:
        ConfigError: the state folder holds what the other warehouse's last sync left
            unfinished (a load, or the repair after a resumed one): loaded here it would
            land in the wrong warehouse, and dropped the repair would be lost.
    """
    owner = _local_part(pipeline.state).get(_OWNER)
    if owner is None or owner == key:
        return
    if pipeline.has_pending_data:
        raise ConfigError(
            "DLT_DATA_DIR holds a load another warehouse's sync left unfinished: sync that "
            "warehouse once to finish it (if it moved or is gone, `dlt pipeline sixtyfour "
            "abort-packages --yes` drops the load, whose changes are read again); give each "
            "warehouse its own DLT_DATA_DIR"
        )
    if repair_owed is not None and repair_owed.exists():
        raise ConfigError(
            "DLT_DATA_DIR owes another warehouse the removal of rows a resumed load may have "
            "loaded twice: sync that warehouse once (if it moved or is gone, delete "
            f"{repair_owed}); give each warehouse its own DLT_DATA_DIR"
        )
    log.warning(
        "the pipeline state in DLT_DATA_DIR is another warehouse's: this warehouse's own "
        "is read from it instead (give each warehouse its own DLT_DATA_DIR)"
    )
    pipeline.drop()


def claim(pipeline: Pipeline, key: str) -> None:
    """Name this warehouse in the local state."""
    if _local_part(pipeline.state).get(_OWNER) == key:
        return
    with pipeline.managed_state() as state:
        _local_part(state)[_OWNER] = key


def _local_part(state: TPipelineState) -> dict[str, Any]:
    """The part of a pipeline state dlt keeps on this machine only (a typed dict of its own
    keys, which takes others as well)."""
    return cast(dict[str, Any], state["_local"])
