"""How a sync uses memory: the allocators, the cyclic collector, and what it hands back."""

from __future__ import annotations

import ctypes
import gc
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa

log = logging.getLogger("sixtyfour_sync.memory")


def release_freed_memory() -> None:
    """Return freed heap and Arrow memory to the system, where the platform allows it.

    Pages are fetched on worker threads, and glibc keeps what is freed in the arenas it
    was taken from, as Arrow's allocator keeps its own: without this the load, which brings
    DuckDB's memory on top, would start from the extraction's high-water mark. Reference
    cycles left while the collector ran rarely (each HTTP response leaves one) are
    collected first.
    """
    gc.collect()
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL(None).malloc_trim(0)  # the C library the interpreter runs on
    except (OSError, AttributeError):
        log.debug("malloc_trim is not available here (not glibc): nothing released")


# glibc's mallopt parameter for the number of malloc arenas.
_M_ARENA_MAX = -8


def use_lean_allocators() -> None:
    """Two malloc arenas at most, where the C library is glibc.

    For the command line only (a library must not change its host's allocator). By default
    glibc gives every thread that allocates its own arena, and the page fetchers are
    threads: what one of them frees stays in its arena. A cron job's peak memory counts on
    a small host; its speed does not notice.
    """
    try:
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, 2)
    except (OSError, AttributeError):
        log.debug("mallopt is not available here (not glibc): arenas left as they are")


# Python's cyclic collector during a sync: a young pass once 50,000 more container objects
# are alive (the default is 700), a middle one every 10 young ones, and no full pass at all.
_SYNC_GC_THRESHOLDS = (50_000, 10, 1_000_000_000)


# Syncs running in this process (a library host may run several in threads): the first to
# begin sets the thresholds, the last to end puts the host's back.
_lean_syncs = 0
_host_thresholds: tuple[int, ...] = ()
_lean_lock = threading.Lock()


@contextmanager
def lean_cycle_collection() -> Iterator[None]:
    """Run Python's cyclic garbage collector rarely, and never over all objects, meanwhile.

    A sync frees what it reads by reference counting: a page, a batch of runs and their
    Arrow tables hold no reference cycles. With the default settings the collector, set
    off by the many dicts each page parses into, walked the live batch again and again:
    more than a second of a 200,000-run backfill. Young and middle passes still run now
    and then, for the cycles each HTTP response leaves behind (a response still in flight
    at a young pass is collected at a later middle one). The setting is process-wide,
    which a cron job can afford; it is restored as soon as the last sync running ends.
    """
    global _lean_syncs, _host_thresholds
    with _lean_lock:
        if _lean_syncs == 0:
            _host_thresholds = gc.get_threshold()
            gc.set_threshold(*_SYNC_GC_THRESHOLDS)
        _lean_syncs += 1
    try:
        yield
    finally:
        with _lean_lock:
            _lean_syncs -= 1
            if _lean_syncs == 0:
                gc.set_threshold(*_host_thresholds)
