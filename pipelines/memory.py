"""Handing the memory an extraction freed back to the system before the warehouse load."""

from __future__ import annotations

import ctypes
import logging

import pyarrow as pa

log = logging.getLogger("sixtyfour_sync.memory")


def release_freed_memory() -> None:
    """Return freed heap and Arrow memory to the system, where the platform allows it.

    Pages are parsed on worker threads, and glibc keeps what they free in per-thread
    arenas, as Arrow's allocator keeps its own: without this the load, which brings
    DuckDB's memory on top, would start from the extraction's high-water mark.
    """
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
