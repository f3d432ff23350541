"""Shaping at Arrow speed: timestamps come out exactly as value by value.

`to_utc_array` takes vectorised shortcuts; it is compared here with the straightforward
version it replaced (kept below as the reference) over many seeded random inputs, and pinned
on the cases the shortcuts must not get wrong.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipelines.emulator import World, WorldConfig
from pipelines.sixtyfour import timestamps
from pipelines.sixtyfour.timestamps import UTC_MICROS, BadTimestamp, parse_instant, to_utc_array

SEEDS = range(12)

# -- the references: the per-value code the vectorised versions replaced ----------------------

_HAS_ZONE = r"([Zz]|[+-]\d\d(:?\d\d)?)$"
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)


def reference_to_utc_array(values: Sequence[Any] | pa.Array) -> pa.Array:
    """The former to_utc_array: a regular expression finds the values without a zone."""
    try:
        text = pa.array(values, pa.string())
    except _ARROW_ERRORS:
        return reference_parse_each(values)
    try:
        return pc.cast(text, UTC_MICROS)
    except _ARROW_ERRORS:
        pass
    zoned = pc.if_else(
        pc.match_substring_regex(text, _HAS_ZONE),
        text,
        pc.binary_join_element_wise(text, "+00:00", ""),
    )
    try:
        return pc.cast(zoned, UTC_MICROS)
    except _ARROW_ERRORS:
        return reference_parse_each(values)


def reference_parse_each(values: Sequence[Any] | pa.Array) -> pa.Array:
    if isinstance(values, pa.Array):
        values = values.to_pylist()
    return pa.array([None if v is None else parse_instant(v) for v in values], UTC_MICROS)


# -- helpers ----------------------------------------------------------------------------------


def parsed(function: Any, values: Sequence[Any] | pa.Array) -> tuple[Any, ...]:
    """What a parser made of the values: the array, or the error and the value it names."""
    try:
        result = function(values)
    except BadTimestamp as exc:
        return ("BadTimestamp", exc.value)
    except ValueError as exc:  # pendulum's own, for an offset of 24 hours or more
        return (type(exc).__name__, str(exc))
    assert result.type == UTC_MICROS
    return ("ok", result.cast(pa.int64()).to_pylist())


def emulated_runs(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """Runs exactly as the emulated list endpoint serves them."""
    world = World(WorldConfig(seed=seed, runs=count))
    return [world.payload(run["job_id"]) for run in world.runs()]


# -- timestamps -------------------------------------------------------------------------------


def random_timestamp(rng: random.Random, clean: bool) -> Any:
    """An API-like timestamp: any offset form, precision or none; some unreadable if not clean."""
    if rng.random() < 0.05:
        return None
    if not clean and rng.random() < 0.08:
        return rng.choice(
            [
                "",
                "x",
                "2026-10-31",
                "2026-10",
                "2026-10-31T",
                "é",
                "2026-13-01T00:00:00Z",
                "2026-10-31T24:00:00",
                "2026-10-31T23:59:60Z",
                "2026-10-31T05:11:47é",
                "+0545",
                5,
            ]
        )
    date = f"{rng.randint(1, 9999):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    separator = rng.choice("TTTTTTT ")
    parts = rng.choice([1, 2, 3, 3, 3, 3])
    time = ":".join(f"{rng.randint(0, 23 if i == 0 else 59):02d}" for i in range(parts))
    if parts == 3 and rng.random() < 0.6:
        digits = rng.choice([1, 2, 3, 3, 4, 5, 6, 6] if clean else [1, 3, 6, 7, 9])
        time += "." + "".join(rng.choice("0123456789") for _ in range(digits))
    zones = ["", "", "Z", "Z", "+00:00", "-08:00", "+05:45", "+0545", "-0800", "+05", "-11"]
    if not clean:
        zones += ["z", "+5", "+05:4", "UTC", " Z", "+24:00", "+05:45:00"]
    return date + separator + time + rng.choice(zones)


@pytest.mark.parametrize("seed", SEEDS)
def test_timestamps_parse_as_the_per_value_reference_on_random_pages(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(150):
        clean = rng.random() < 0.7
        values = [random_timestamp(rng, clean) for _ in range(rng.choice([0, 1, 3, 20, 200]))]
        want = parsed(reference_to_utc_array, values)
        assert parsed(to_utc_array, values) == want, values
        if all(v is None or isinstance(v, str) for v in values):
            assert parsed(to_utc_array, pa.array(values, pa.string())) == want, values


def test_emulated_pages_parse_as_the_per_value_reference() -> None:
    runs = emulated_runs(3000)
    for field in ("created_at", "updated_at", "queued_at", "started_at", "completed_at"):
        values = [run[field] for run in runs]
        assert any(v and v[-1].isdigit() and v[-6] not in "+-" for v in values), "naive ones"
        assert parsed(to_utc_array, values) == parsed(reference_to_utc_array, values)
        assert parsed(to_utc_array, pa.array(values)) == parsed(reference_to_utc_array, values)


def test_pages_mixing_zoned_and_naive_values_stay_vectorised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def one_by_one(values: Any) -> pa.Array:
        raise AssertionError("parsed value by value")

    monkeypatch.setattr(timestamps, "_parse_each", one_by_one)
    values = [run["created_at"] for run in emulated_runs(500)]
    assert any(v[-1].isdigit() and v[-6] not in "+-" for v in values)
    assert any(v.endswith("Z") for v in values) and any("+" in v for v in values)
    assert to_utc_array(values).null_count == 0


def test_every_offset_form_and_fraction_reads_to_the_microsecond() -> None:
    values = [
        "2026-10-31T05:11:47Z",
        "2026-10-31T05:11:47.5Z",
        "2026-10-31T05:11:47.123+00:00",
        "2026-10-31T10:56:47.123456+05:45",
        "2026-10-31T10:56:47+0545",
        "2026-10-31T10:11:47+05",
        "2026-10-30T21:11:47.000001-08:00",
        "2026-10-31 05:11:47Z",
    ]
    got = to_utc_array(values).to_pylist()
    assert got == [
        datetime(2026, 10, 31, 5, 11, 47, tzinfo=UTC),
        datetime(2026, 10, 31, 5, 11, 47, 500000, tzinfo=UTC),
        datetime(2026, 10, 31, 5, 11, 47, 123000, tzinfo=UTC),
        datetime(2026, 10, 31, 5, 11, 47, 123456, tzinfo=UTC),
        datetime(2026, 10, 31, 5, 11, 47, tzinfo=UTC),
        datetime(2026, 10, 31, 5, 11, 47, tzinfo=UTC),
        datetime(2026, 10, 31, 5, 11, 47, 1, tzinfo=UTC),
        datetime(2026, 10, 31, 5, 11, 47, tzinfo=UTC),
    ]


def test_naive_timestamps_among_zoned_ones_are_taken_as_utc() -> None:
    values = ["2026-10-31T05:11:47.123", None, "2026-10-31T10:56:47+05:45", "2026-10-31T05:11"]
    assert to_utc_array(values).to_pylist() == [
        datetime(2026, 10, 31, 5, 11, 47, 123000, tzinfo=UTC),
        None,
        datetime(2026, 10, 31, 5, 11, 47, tzinfo=UTC),
        datetime(2026, 10, 31, 5, 11, tzinfo=UTC),
    ]
    assert (
        to_utc_array(["2026-10-31T05:11:47"] * 3).to_pylist()
        == [datetime(2026, 10, 31, 5, 11, 47, tzinfo=UTC)] * 3
    )


def test_what_arrow_cannot_read_goes_through_parse_instant() -> None:
    # Nanoseconds and a date alone: Arrow's cast refuses them, parse_instant reads them.
    values = ["2026-10-31T05:11:47.123456789Z", "2026-10-31", "2026-10-31T05:11:47Z"]
    assert to_utc_array(values).to_pylist() == [
        datetime(2026, 10, 31, 5, 11, 47, 123456, tzinfo=UTC),
        datetime(2026, 10, 31, tzinfo=UTC),
        datetime(2026, 10, 31, 5, 11, 47, tzinfo=UTC),
    ]


def test_nulls_stay_null_and_the_first_unreadable_value_is_named() -> None:
    assert to_utc_array([None, None]).to_pylist() == [None, None]
    assert to_utc_array(pa.array([], pa.string())).to_pylist() == []
    with pytest.raises(BadTimestamp) as raised:
        to_utc_array(["2026-10-31T05:11:47Z", "soon", "later"])
    assert raised.value.value == "soon"
    with pytest.raises(BadTimestamp) as raised:
        to_utc_array(pa.array(["2026-10-31T05:11:47", None, "31/10/2026"]))
    assert raised.value.value == "31/10/2026"


def test_a_string_array_and_a_list_give_the_same_instants() -> None:
    values = ["2026-10-31T05:11:47.123", None, "2026-10-31T10:56:47+05:45", "2026-10-31T05:11Z"]
    sliced = pa.array(["x", *values])[1:]
    assert to_utc_array(sliced).equals(to_utc_array(values))
    assert to_utc_array(pa.array(values)).equals(to_utc_array(values))
