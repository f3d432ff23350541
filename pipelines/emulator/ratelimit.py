"""The API's rate limit: a budget of requests per key over a sliding 60-second window."""

from __future__ import annotations

import threading
import time
from collections import deque

WINDOW_SECONDS = 60.0


class SlidingWindow:
    """Requests per API key over the last 60 seconds.

    A refused request (429) is not recorded in the window (it still counts in the server's
    stats): if it took a slot, a client retrying too early would push its own next slot
    further away and could lock itself out for good. So Retry-After is exact.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = {}

    def _window(self, key: str, now: float) -> deque[float]:
        window = self._hits.setdefault(key, deque())
        while window and window[0] <= now - WINDOW_SECONDS:
            window.popleft()
        return window

    def hit(self, key: str, limit: int) -> tuple[int, float]:
        """Count a request if the budget allows.

        Returns:
            (requests remaining, seconds until a slot frees); the second is 0 when the
            request was counted and positive when it must be refused.
        """
        with self._lock:
            now = time.monotonic()
            window = self._window(key, now)
            if len(window) >= limit:
                return 0, window[0] + WINDOW_SECONDS - now
            window.append(now)
            return limit - len(window), 0.0

    def remaining(self, key: str, limit: int) -> int:
        """Requests left for `key` without counting one."""
        with self._lock:
            if key not in self._hits:  # unknown keys must not grow the table
                return limit
            return max(0, limit - len(self._window(key, time.monotonic())))
