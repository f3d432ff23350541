"""The range each numeric source setting must lie in, checked before a sync reads anything.

dlt checks that a setting reads as a number; whether the number makes sense is ours. Out of
range, a value would not fail loudly: a negative lag would silently skip runs changed just
after the cursor, a rate limit below one per minute would stretch a sync over hours, and
infinity or NaN would fail deep in the sync as an unexpected error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipelines.sixtyfour.errors import ConfigError

_YEAR_SECONDS = 365 * 86_400


@dataclass(frozen=True)
class _Range:
    least: float
    most: float
    words: str  # what the value must be, as the error line says it
    above_least: bool = False  # the value must be above `least`, not equal to it
    zero_turns_off: bool = False  # 0 is taken as well, meaning "none"


_RANGES: dict[str, _Range] = {
    "lag_seconds": _Range(0, _YEAR_SECONDS, "seconds from 0 to a year (31536000)"),
    "max_detail_requests": _Range(0, math.inf, "a whole number, 0 or more"),
    "rate_limit_per_minute": _Range(
        1, math.inf, "0 (no limit) or a number of requests per minute from 1", zero_turns_off=True
    ),
    "concurrency": _Range(1, math.inf, "a whole number, 1 or more"),
    "timeout_seconds": _Range(
        0, _YEAR_SECONDS, "seconds above 0, up to a year (31536000)", above_least=True
    ),
    "max_retries": _Range(0, math.inf, "a whole number, 0 or more"),
    "max_retry_wait_seconds": _Range(0, _YEAR_SECONDS, "seconds from 0 to a year (31536000)"),
    "workflows_refresh_hours": _Range(0, 365 * 24, "hours from 0 to a year (8760)"),
}


def check_bounds(**values: float) -> None:
    """Raise ConfigError naming the first setting (by its name under [sources.sixtyfour])
    whose value is out of its range, or is infinite or NaN."""
    for name, value in values.items():
        bounds = _RANGES[name]
        if not _within(value, bounds):
            raise ConfigError(
                f"setting 'sources.sixtyfour.{name}' must be {bounds.words}, got {value!r}: "
                "fix it in .dlt/config.toml or its environment variable"
            )


def _within(value: float, bounds: _Range) -> bool:
    if not math.isfinite(value):
        return False
    if bounds.zero_turns_off and value == 0:
        return True
    if value < bounds.least or (bounds.above_least and value == bounds.least):
        return False
    return value <= bounds.most
