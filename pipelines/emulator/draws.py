"""The random draws that shape a world: workflows, queue waits, run times, outcomes.

All take the world's one `random.Random`, so the order of calls fixes the result.
"""

from __future__ import annotations

import random
from math import log

from .records import CANCELLED, COMPLETED, FAILED, Workflow, new_uuid

SECOND = 1_000_000
DAY = 86_400 * SECOND

_BLOCK_NAMES = (
    "find_email", "find_phone", "enrich_company", "enrich_person", "qualify_lead",
    "research_web", "score_fit",
)  # fmt: skip
_TOPICS = (
    "Lead enrichment", "Founder emails", "Company research", "Phone lookup", "Hiring signals",
    "Investor list", "Account scoring", "CRM cleanup",
)  # fmt: skip


def uuid(rng: random.Random) -> str:
    """A version-4 UUID string from the generator's bits."""
    return new_uuid(rng.getrandbits(128))


def queue_wait(rng: random.Random) -> int:
    """How long a run waits in the queue (µs): at least a second, 30 s more on average."""
    return int((1 - 30 * log(1 - rng.random())) * SECOND)


def run_time(rng: random.Random) -> int:
    """How long a run executes (µs): at least 5 s, ten minutes more on average."""
    return int((5 - 600 * log(1 - rng.random())) * SECOND)


def final_status(rng: random.Random) -> str:
    """How a run ends: about 82 % completed, 12 % failed, 6 % cancelled."""
    draw = rng.random()
    return COMPLETED if draw < 0.82 else FAILED if draw < 0.94 else CANCELLED


def workflow(
    rng: random.Random, number: int, org_id: str, user: str, first_run: int, now: int
) -> Workflow:
    """A workflow created some time before `first_run`, last edited before `now`.

    Every workflow imports rows, runs one to five enrichment blocks, and exports.
    """
    created = first_run - int(rng.random() * 90 * DAY)
    names = ("import_rows", *rng.sample(_BLOCK_NAMES, rng.randint(1, 5)), "export_rows")
    untitled = rng.random() < 0.1
    return Workflow(
        id=uuid(rng),
        user_uuid=user,
        org_id=org_id,
        name="Untitled Workflow" if untitled else f"{rng.choice(_TOPICS)} #{number}",
        description=None if untitled else f"Workflow number {number} of the emulated org",
        status="active" if rng.random() < 0.85 else "inactive",
        step=rng.choice(("published", "build", "test")),
        created=created,
        updated=created + int(rng.random() * (now - created)),
        block_ids=tuple(f"blk_{rng.getrandbits(48):012x}" for _ in names),
        block_names=names,
    )
