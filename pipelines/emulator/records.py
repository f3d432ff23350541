"""One emulated run and workflow: their state, and the forms their timestamps are served in.

Times are kept as integer microseconds since the Unix epoch (UTC): cheap to store for 200,000
runs and exact, so a served string always parses back to the canonical instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

QUEUED, RUNNING = "queued", "running"
COMPLETED, FAILED, CANCELLED = "completed", "failed", "cancelled"
IN_FLIGHT = (QUEUED, RUNNING)
TERMINAL = (COMPLETED, FAILED, CANCELLED)
STATUSES = IN_FLIGHT + TERMINAL

# Index of each run timestamp; each field gets its own served form (offset style).
CREATED, UPDATED, QUEUED_AT, STARTED, COMPLETED_AT = range(5)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

# Offset styles, 100 slots so the shares read as percentages: 2 % carry no offset at all
# (to be read as UTC), 48 % "Z", 25 % "+00:00", 25 % a real offset with the time shifted to it.
_OFFSETS = ((120, "+02:00"), (-330, "-05:30"), (345, "+05:45"), (-480, "-08:00"), (540, "+09:00"))
_STYLES: tuple[tuple[int, str], ...] = (
    ((0, ""),) * 2 + ((0, "Z"),) * 48 + ((0, "+00:00"),) * 25 + _OFFSETS * 5
)
_DIGITS = (0, 3, 6)
_GRANULARITY = {0: 1_000_000, 3: 1_000, 6: 1}


def new_uuid(bits: int) -> str:
    """Format 128 random bits as a version-4 UUID string (deterministic given the bits)."""
    text = f"{bits:032x}"
    variant = "89ab"[int(text[16], 16) & 3]
    return f"{text[:8]}-{text[8:12]}-4{text[13:16]}-{variant}{text[17:20]}-{text[20:]}"


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (naive ones are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def to_datetime(us: int) -> datetime:
    """The aware UTC datetime of a microsecond timestamp."""
    return _EPOCH + timedelta(microseconds=us)


# Formatting dominates serialisation, so the pieces of the text come from tables.
_DAYS: dict[int, str] = {}
_MINUTES = [f"T{hour:02d}:{minute:02d}:" for hour in range(24) for minute in range(60)]
_SECONDS = [f"{second:02d}" for second in range(60)]


def format_us(us: int, offset_minutes: int = 0, suffix: str = "+00:00", digits: int = 6) -> str:
    """ISO-8601 text of an instant, shown at the given offset with 0, 3 or 6 fraction digits."""
    seconds, fraction = divmod(us + offset_minutes * 60_000_000, 1_000_000)
    days, in_day = divmod(seconds, 86_400)
    day = _DAYS.get(days)
    if day is None:
        day = _DAYS[days] = date.fromordinal(_EPOCH_ORDINAL + days).isoformat()
    minute, second = divmod(in_day, 60)
    if digits == 6:
        return f"{day}{_MINUTES[minute]}{_SECONDS[second]}.{fraction:06d}{suffix}"
    if digits == 3:
        return f"{day}{_MINUTES[minute]}{_SECONDS[second]}.{fraction // 1000:03d}{suffix}"
    return f"{day}{_MINUTES[minute]}{_SECONDS[second]}{suffix}"


@dataclass(slots=True)
class Workflow:
    """A workflow of the organisation; its blocks are what each of its runs executes."""

    id: str
    user_uuid: str
    org_id: str
    name: str
    description: str | None
    status: str
    step: str | None
    created: int
    updated: int
    block_ids: tuple[str, ...]
    block_names: tuple[str, ...]


class Run:
    """The state of one run (what it serves is built in payloads.py)."""

    __slots__ = (
        "cached",
        "completed",
        "created",
        "extra",
        "final",
        "has_blocks",
        "job_id",
        "mseed",
        "order",
        "plan_end",
        "plan_start",
        "queued",
        "started",
        "status",
        "style",
        "updated",
        "workflow",
    )

    def __init__(
        self,
        seq: int,
        job_id: str,
        workflow: Workflow,
        queued: int,
        style: int,
        mseed: int,
        has_blocks: bool,
    ) -> None:
        self.job_id = job_id
        self.workflow = workflow
        self.status = QUEUED
        self.style = style
        self.queued = self.quantize(queued)
        # Runs are listed by queued_at; the sequence number breaks ties the same way everywhere.
        self.order = (self.queued << 24) | (seq & 0xFFFFFF)
        # The record exists a moment before the run is enqueued.
        self.created = self.quantize(queued - (mseed >> 44) % 2_000_000)
        self.updated = self.queued
        self.started: int | None = None
        self.completed: int | None = None
        self.mseed = mseed
        self.has_blocks = has_blocks
        # Schedule of an in-flight run: planned start (None once started) and finish.
        self.plan_start: int | None = None
        self.plan_end: int | None = None
        self.final: str | None = None
        self.extra: dict[str, Any] | None = None
        self.cached: bytes | None = None

    def quantize(self, us: int) -> int:
        """Round down to this run's precision, so its served text is exact for the instant.

        Every timestamp of a run shares one precision: rounding down then keeps
        created <= queued <= started <= completed = updated in the served values too.
        """
        return us - us % _GRANULARITY[_DIGITS[self.style % 3]]

    def stamp(self, field: int, us: int | None) -> str | None:
        """The served text of timestamp `field` (CREATED..COMPLETED_AT), in its own form."""
        if us is None:
            return None
        offset, suffix = _STYLES[((self.style >> (8 + 10 * field)) & 1023) % 100]
        return format_us(us, offset, suffix, _DIGITS[self.style % 3])
