"""Beginning a sync's extraction before dlt's extract step, to spot a sync with nothing to load.

A sync that finds no change still owes its ledger row. Through dlt that row costs the extract,
normalize and load steps, which take longer than the sync's two requests; begun early, the
extraction tells the runner that only the ledger row is left, and the runner appends it
directly. Anything else continues inside dlt exactly as if it had not been begun.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

import pyarrow as pa

from pipelines.sixtyfour.client import SixtyfourClient
from pipelines.sixtyfour.ledger import LEDGER_TABLE

TableStream = Iterator[tuple[str, pa.Table]]


class Extraction:
    """One sync's stream of (table name, Arrow table), which may be begun ahead of dlt.

    The runner creates it and hands it to the source, which binds what the stream needs.
    """

    def __init__(self) -> None:
        self._make_client: Callable[[], SixtyfourClient] | None = None
        self._stream: Callable[[SixtyfourClient, MutableMapping[str, Any]], TableStream] | None
        self._stream = None
        self._client: SixtyfourClient | None = None
        self._tables: TableStream | None = None
        self._state: dict[str, Any] | None = None
        self._read_ahead: list[tuple[str, pa.Table]] = []
        self.ledger: pa.Table | None = None
        # Tables the warehouse holds no row of (the runner finds out): appended, not merged.
        self.append_tables: frozenset[str] = frozenset()
        # Newer versions of runs this extraction already yielded, loaded after it.
        self.second_load: list[tuple[str, pa.Table]] = []
        # The resource state (cursor, lag window) once the second load has landed too: the
        # first load's state holds them back (see changes.hold_back).
        self.state_after_second_load: dict[str, Any] = {}

    def bind(
        self,
        make_client: Callable[[], SixtyfourClient],
        stream: Callable[[SixtyfourClient, MutableMapping[str, Any]], TableStream],
    ) -> None:
        """Give the extraction its client factory and the stream proper (the source does)."""
        self._make_client = make_client
        self._stream = stream

    def begin(self, state: Mapping[str, Any]) -> bool:
        """Read on a copy of the resource state until the first table to load.

        Returns:
            True when the sync has nothing to load but its ledger row (kept in `ledger`),
            no run set aside for a second load, and the state is unchanged; the runner may
            then skip dlt's steps altogether.
        """
        assert self._make_client is not None and self._stream is not None, "not bound"
        self._state = copy.deepcopy(dict(state))
        self._client = self._make_client()
        self._tables = self._stream(self._client, self._state)
        try:
            for name, table in self._tables:
                self._read_ahead.append((name, table))
                if name != LEDGER_TABLE:
                    return False
        except BaseException:
            self._close()
            raise
        self._close()
        self.ledger = self._read_ahead[-1][1] if self._read_ahead else None
        return self._state == dict(state) and not self.second_load

    def tables(self, state: MutableMapping[str, Any]) -> TableStream:
        """Every table of the sync; a begun extraction is continued and hands its state over."""
        assert self._make_client is not None and self._stream is not None, "not bound"
        if self._tables is None:
            self._client = self._make_client()
            try:
                yield from self._stream(self._client, state)
            finally:
                self._close()
            return
        try:
            # Handed on and let go: held here, the first tables would stay in memory to the end.
            while self._read_ahead:
                yield self._read_ahead.pop(0)
            yield from self._tables
        finally:
            self._close()
        assert self._state is not None
        state.clear()
        state.update(self._state)

    def _close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
