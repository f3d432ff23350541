"""Which warehouse the pipeline state in DLT_DATA_DIR belongs to.

dlt keeps one state per pipeline name in DLT_DATA_DIR, whatever the destination: two
warehouses synced from one machine with the default folder share it. The cursor in it is
the last loaded warehouse's; read on from it, a sync into the other warehouse would leave
out, silently, every run that changed since that warehouse's own last sync. Each state
therefore names its warehouse, and a state of another is set aside for the one this
warehouse keeps (dlt stores the state with every load).
"""

from __future__ import annotations

import hashlib
import logging

from dlt.pipeline.pipeline import Pipeline

from pipelines.config import WarehouseSettings
from pipelines.sixtyfour import source_state
from pipelines.sixtyfour.errors import ConfigError

log = logging.getLogger("sixtyfour_sync.state")

_OWNER = "warehouse"


def warehouse_key(pipeline: Pipeline, warehouse_settings: WarehouseSettings) -> str:
    """A digest naming the warehouse: destination, where it is, dataset (no secret in it)."""
    if warehouse_settings.duckdb_path is not None:
        where = str(warehouse_settings.duckdb_path.resolve())
    else:
        # dlt's credentials as text show user, host, port and database, never the password.
        where = str(pipeline.sql_client().credentials)
    named = f"{warehouse_settings.destination}\n{where}\n{warehouse_settings.dataset_name}"
    return hashlib.sha256(named.encode()).hexdigest()[:16]


def set_aside_another_warehouses_state(pipeline: Pipeline, key: str) -> None:
    """Drop the local state when it was last loaded to another warehouse.

    The caller then restores this warehouse's own state from it, as for a new DLT_DATA_DIR.

    Raises:
        ConfigError: the state folder holds a load that the other warehouse's last sync
            left unfinished: dropped, its fetched changes would not be lost (that
            warehouse's cursor never passed them), but its repair of rows a resumed load
            may have doubled would be.
    """
    owner = source_state(pipeline.state).get(_OWNER)
    if owner is None or owner == key:
        return  # this warehouse's, or a state from before states named their warehouse
    if pipeline.has_pending_data:
        raise ConfigError(
            "DLT_DATA_DIR holds a load another warehouse's sync left unfinished: sync that "
            "warehouse once to finish it, and give each warehouse its own DLT_DATA_DIR"
        )
    log.warning(
        "the pipeline state in DLT_DATA_DIR is another warehouse's: this warehouse's own "
        "is read from it instead (give each warehouse its own DLT_DATA_DIR)"
    )
    pipeline.drop()


def claim(pipeline: Pipeline, key: str) -> None:
    """Name this warehouse in the state; the next load stores it there with the rest."""
    if source_state(pipeline.state).get(_OWNER) == key:
        return
    with pipeline.managed_state() as state:
        source_state(state)[_OWNER] = key
