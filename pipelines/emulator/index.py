"""Runs by (workflow, status) selection, kept in the order the API lists them.

A filtered request reads its selection's list directly: no scan of the whole history.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable
from operator import attrgetter, itemgetter

from .records import IN_FLIGHT, Run

ACTIVE = "active"  # the API's filter for queued + running
IndexKey = tuple[str | None, str | None]  # (workflow id, status); None = any

_ORDER = attrgetter("order")


def _newest_first(run: Run) -> int:
    return -run.order


class RunIndex:
    """Runs of one (workflow, status) selection, read in queued_at-descending order.

    The order is brought up to date lazily, when read, by splicing in the changes since the
    last read: a sync between small clock steps must not pay a full sort of 200,000 runs.
    """

    __slots__ = ("added", "members", "ordered", "removed")

    def __init__(self) -> None:
        self.members: dict[str, Run] = {}
        self.ordered: list[Run] | None = None
        # Changes not yet applied to `ordered`; a run added then removed cancels out.
        self.added: dict[str, Run] = {}
        self.removed: list[Run] = []

    def add(self, run: Run) -> None:
        """Include a run (not already a member)."""
        self.members[run.job_id] = run
        if self.ordered is not None:
            self.added[run.job_id] = run

    def remove(self, run: Run) -> None:
        """Leave a run out (a member)."""
        del self.members[run.job_id]
        if self.ordered is not None and self.added.pop(run.job_id, None) is None:
            self.removed.append(run)

    def view(self) -> list[Run]:
        """The members, newest queued first; the list is the index's own, not a copy."""
        if self.ordered is None:
            self.ordered = sorted(self.members.values(), key=_ORDER, reverse=True)
        elif len(self.added) + len(self.removed) > 64:
            self.ordered = _splice(self.ordered, self.removed, self.added.values())
        else:
            # A few changes: moving pointers in place beats copying the whole list.
            for run in self.removed:
                del self.ordered[bisect_left(self.ordered, -run.order, key=_newest_first)]
            for run in self.added.values():
                insort(self.ordered, run, key=_newest_first)
        self.added, self.removed = {}, []
        return self.ordered


def _splice(ordered: list[Run], removed: list[Run], added: Iterable[Run]) -> list[Run]:
    """`ordered` without `removed` and with `added`, still newest first.

    One bisect per change and one pass of slice copies, so many changes cost one copy.
    """
    edits = [(bisect_left(ordered, -run.order, key=_newest_first), -run.order, run, False)
             for run in removed]  # fmt: skip
    edits += [(bisect_left(ordered, -run.order, key=_newest_first), -run.order, run, True)
              for run in added]  # fmt: skip
    edits.sort(key=itemgetter(0, 1))
    spliced: list[Run] = []
    start = 0
    for position, _key, run, insert in edits:
        # A run removed and added back has both edits at one position, removal first.
        spliced += ordered[start:position]
        start = max(start, position)
        if insert:
            spliced.append(run)
        else:
            start = position + 1  # the removed run sits exactly at its bisect position
    spliced += ordered[start:]
    return spliced


class Catalog:
    """Every run, in one RunIndex per selection: any/one workflow x any/one status/active."""

    def __init__(self) -> None:
        self._indexes: dict[IndexKey, RunIndex] = {}

    def add(self, run: Run) -> None:
        """Index a new run under its workflow and current status."""
        self._add(run, [(run.workflow.id, None), (None, None), *_status_keys(run)])

    def restatus(self, run: Run, status: str) -> None:
        """Set a run's status and move it to that status's indexes."""
        for key in _status_keys(run):
            self._indexes[key].remove(run)
        run.status = status
        self._add(run, _status_keys(run))

    def view(self, workflow_id: str | None, status: str | None) -> list[Run]:
        """The runs of a selection, newest queued first (do not modify the list)."""
        index = self._indexes.get((workflow_id, status))
        return index.view() if index is not None else []

    def _add(self, run: Run, keys: list[IndexKey]) -> None:
        for key in keys:
            index = self._indexes.get(key)
            if index is None:
                index = self._indexes[key] = RunIndex()
            index.add(run)


def _status_keys(run: Run) -> list[IndexKey]:
    # The all-status indexes never change for a run; these follow its status.
    keys: list[IndexKey] = [(run.workflow.id, run.status), (None, run.status)]
    if run.status in IN_FLIGHT:
        keys += [(run.workflow.id, ACTIVE), (None, ACTIVE)]
    return keys
