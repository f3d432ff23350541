"""Shaping at Arrow speed: timestamps and metrics come out exactly as value by value.

`to_utc_array` and `metrics_table` take vectorised shortcuts; each is compared here with the
straightforward version it replaced (kept below as the reference) over many seeded random
inputs, and pinned on the cases the shortcuts must not get wrong.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipelines.emulator import World, WorldConfig
from pipelines.sixtyfour import metrics, shaping, timestamps
from pipelines.sixtyfour.errors import ApiResponseError
from pipelines.sixtyfour.metrics import METRICS_MARKER, METRICS_SCHEMA, metrics_table
from pipelines.sixtyfour.timestamps import (
    UTC_MICROS,
    BadTimestamp,
    parse_instant,
    to_micros,
    to_utc_array,
)

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


Row = tuple[float | None, str | None, bool | None]


def reference_metric_rows(runs: Sequence[dict[str, Any]]) -> dict[tuple[str, str], Row]:
    """The former flattening loop; of two rows of a run with one name, the later one."""
    rows: dict[tuple[str, str], Row] = {}

    def add(job_id: str, prefix: str, metrics: dict[str, Any]) -> None:
        for key, value in metrics.items():
            name = prefix + key
            if type(value) is dict and value:
                add(job_id, name + ".", value)
            elif type(value) is int or type(value) is float:
                rows.pop((job_id, name), None)
                rows[(job_id, name)] = (value, None, None)
            else:
                rows.pop((job_id, name), None)
                rows[(job_id, name)] = (None, orjson.dumps(value).decode(), None)

    for run in runs:
        metrics = run.get("metrics")
        before = len(rows)
        if type(metrics) is dict:
            add(run["job_id"], "", metrics)
        elif metrics is not None:
            add(run["job_id"], "", {"": metrics})
        if len(rows) == before:
            rows[(run["job_id"], "")] = (None, None, True)
    return rows


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


def metric_rows(table: pa.Table) -> dict[tuple[str, str], Row]:
    """The table's rows by (job_id, metric), checking each pair comes once."""
    assert table.schema == METRICS_SCHEMA
    columns = [table.column(name).to_pylist() for name in table.column_names]
    keys = list(zip(columns[0], columns[1], strict=True))
    assert len(keys) == len(set(keys)), "a (job_id, metric) pair twice"
    return {
        key: (value, text, marker)
        for key, value, text, marker in zip(keys, *columns[2:], strict=True)
    }


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


def test_rfc_3339s_lowercase_separator_and_zone_read_as_their_capitals() -> None:
    values = ["2026-10-31t05:11:47.5z", "2026-10-31T05:11:47z", "2026-10-31t10:56:47+05:45"]
    assert to_utc_array(values).to_pylist() == [
        datetime(2026, 10, 31, 5, 11, 47, 500000, tzinfo=UTC),
        datetime(2026, 10, 31, 5, 11, 47, tzinfo=UTC),
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


def test_words_and_impossible_offsets_are_unreadable_not_a_crash() -> None:
    # "now" would otherwise become the time of the sync; +24:00 is no offset at all.
    for value in ("now", "2026-10-31T05:11:47+24:00", "9999-12-31T23:00:00-05:00"):
        with pytest.raises(BadTimestamp):
            parse_instant(value)
    with pytest.raises(BadTimestamp):
        to_utc_array(["2026-10-31T05:11:47Z", "now"])


def test_instants_outside_years_1_to_9999_in_utc_are_unreadable_to_arrow_too() -> None:
    # Arrow reads them; Python's datetime and PostgreSQL do not (.NET's DateTime.MinValue with
    # a local offset is one such value).
    for value in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        with pytest.raises(BadTimestamp):
            to_utc_array(["2026-10-31T05:11:47Z", value])
    edges = ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"]
    assert to_utc_array(edges).to_pylist() == [
        datetime.min.replace(tzinfo=UTC),
        datetime.max.replace(tzinfo=UTC),
    ]


def test_an_optional_instant_out_of_range_is_kept_as_text_a_required_one_refused() -> None:
    run = {
        "job_id": "j1", "workflow_id": "w1", "status": "completed",
        "updated_at": "2026-11-01T00:00:00Z", "queued_at": "2026-11-01T00:00:00Z",
        "started_at": "0001-01-01T00:00:00+01:00",
    }  # fmt: skip
    table = shaping.runs_table([run], "/workflows/runs")
    assert table.column("started_at").to_pylist() == [None]
    assert table.column("started_at__v_text").to_pylist() == [run["started_at"]]
    past_9999 = {**run, "updated_at": "9999-12-31T23:59:59-01:00"}
    for read in (shaping.runs_table, shaping.page_keys):
        with pytest.raises(ApiResponseError, match="an updated_at out of range"):
            read([past_9999], "/workflows/runs")


def test_a_form_only_pendulum_reads_gives_a_plain_datetime() -> None:
    # An ordinal date: pendulum's DateTime would make a duration an Interval, not a timedelta.
    started, completed = parse_instant("2026-305T12:00:00Z"), parse_instant("2026-305T12:00:01Z")
    assert type(started) is datetime and started == datetime(2026, 11, 1, 12, tzinfo=UTC)
    assert (completed - started).total_seconds() == 1


def test_a_string_array_and_a_list_give_the_same_instants() -> None:
    values = ["2026-10-31T05:11:47.123", None, "2026-10-31T10:56:47+05:45", "2026-10-31T05:11Z"]
    sliced = pa.array(["x", *values])[1:]
    assert to_utc_array(sliced).equals(to_utc_array(values))
    assert to_utc_array(pa.array(values)).equals(to_utc_array(values))


# -- metrics ----------------------------------------------------------------------------------

KEYS = ["row_count", "rows_in", "costs", "a", "b", "note"]
ODD_KEYS = ["a.b", "", "b.", "x.y"]


def random_leaf(rng: random.Random) -> Any:
    return rng.choice(
        [
            rng.randint(-5, 5),
            rng.randint(0, 10**6),
            round(rng.random(), 4),
            0.0,
            1.0,
            True,
            False,
            None,
            "unknown",
            "",
            'quote " back \\ line \n é',
            [],
            [1, "x", None],
            {},
            2**53,
        ]
    )


def random_object(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    """Any metrics object: nested, mixed types, keys whose flattened names collide."""
    metrics: dict[str, Any] = {}
    for _ in range(rng.randint(0, 5)):
        key = rng.choice(KEYS if rng.random() < 0.8 else ODD_KEYS)
        nested = depth < 3 and rng.random() < 0.25
        metrics[key] = random_object(rng, depth + 1) if nested else random_leaf(rng)
    return metrics


def usual_metrics(rng: random.Random) -> dict[str, Any]:
    """Metrics like the emulator's, now and then with a value of another type or missing."""
    metrics: dict[str, Any] = {
        "row_count": rng.randint(0, 5000),
        "rows_in": rng.randint(0, 5000),
        "rows_out": rng.randint(0, 100),
        "costs": {
            "llm_usd": round(rng.random(), 4),
            "enrichment_usd": rng.choice([0.0, round(rng.random(), 4)]),
            "total_usd": round(rng.random(), 4),
        },
        "credits_used": rng.randint(0, 9),
    }
    quirk = rng.randrange(40)
    if quirk == 0:
        metrics["row_count"] = "unknown"
    elif quirk == 1:
        metrics["note"] = "partial"
    elif quirk == 2:
        metrics["cached"] = True
    elif quirk == 3:
        metrics["costs"]["llm_usd"] = rng.choice([None, True, False, "0.5", {}, {"a": 1}, 3])
    elif quirk == 4:
        metrics["costs"] = rng.choice([None, {}, 5, "x", [0.5]])
    elif quirk == 5:
        del metrics["rows_in"]
    elif quirk == 6:
        metrics["rows_out"] = None
    return metrics


def random_runs(rng: random.Random) -> list[dict[str, Any]]:
    usual = rng.random() < 0.6
    runs = []
    for index in range(rng.choice([1, 2, 10, 50, 300])):
        draw = rng.random()
        if draw < 0.05:
            metrics: Any = None
        elif draw < 0.07:
            metrics = rng.choice([{}, 5, "x", [1, 2], True, 1.5, [], "", 0])
        else:
            metrics = usual_metrics(rng) if usual else random_object(rng)
        runs.append({"job_id": f"run-{index}", "metrics": metrics})
    return runs


@pytest.mark.parametrize("seed", SEEDS)
def test_metrics_rows_match_the_reference_on_random_runs(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(40):
        runs = random_runs(rng)
        assert metric_rows(metrics_table(runs)) == reference_metric_rows(runs)


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_metrics_given_the_runs_job_ids_are_the_same_rows(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(20):
        runs = random_runs(rng)
        # Job ids other than the runs' own show that the given ones are the ones used.
        job_ids = pa.array([f"given-{run['job_id']}" for run in runs], pa.string())
        given = metrics_table(runs, job_ids)
        own = metrics_table(runs)
        renamed = pc.binary_join_element_wise("given-", own.column("job_id"), "")
        assert given.equals(own.set_column(0, own.schema.field(0), renamed))


def test_metrics_of_emulated_runs_match_the_reference() -> None:
    runs = emulated_runs(3000)
    metrics = [run["metrics"] for run in runs if run["metrics"]]
    assert any(m["row_count"] == "unknown" for m in metrics), "a key holding a number or text"
    assert any("cached" in m for m in metrics) and any("note" in m for m in metrics)
    assert any(run["metrics"] is None for run in runs)
    assert metric_rows(metrics_table(runs)) == reference_metric_rows(runs)


def test_usual_metrics_are_flattened_a_key_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    runs = emulated_runs(3000)
    one_by_one: list[Any] = []
    add_leaf = metrics._MetricRows.add_leaf

    def counted(rows: Any, run: int, name: str, value: Any) -> None:
        one_by_one.append(value)
        add_leaf(rows, run, name, value)

    monkeypatch.setattr(metrics._MetricRows, "add_leaf", counted)
    metrics_table(runs)
    # Only the odd text values ("unknown", "partial") go one at a time.
    texts = [v for r in runs if r["metrics"] for v in r["metrics"].values() if type(v) is str]
    assert texts and sorted(one_by_one) == sorted(texts)


def test_of_two_metrics_with_one_name_the_later_in_key_order_is_kept() -> None:
    runs = [
        {"job_id": "a", "metrics": {"a.b": 1, "a": {"b": 2}, "c": 3}},
        {"job_id": "b", "metrics": {"a": {"b": 2}, "a.b": "one"}},
        {"job_id": "c", "metrics": {"a": {"": 1, "b": 5}, "a.": True}},
        {"job_id": "d", "metrics": {"a": {"b": 7}}},
    ]
    assert metric_rows(metrics_table(runs)) == {
        ("a", "a.b"): (2.0, None, None),
        ("a", "c"): (3.0, None, None),
        ("b", "a.b"): (None, '"one"', None),
        ("c", "a."): (None, "true", None),
        ("c", "a.b"): (5.0, None, None),
        ("d", "a.b"): (7.0, None, None),
    }


def test_bools_are_json_text_even_among_numbers() -> None:
    runs = [
        {"job_id": "a", "metrics": {"cached": True, "share": 0.5}},
        {"job_id": "b", "metrics": {"cached": False, "share": True}},
        {"job_id": "c", "metrics": {"share": 1}},
    ]
    assert metric_rows(metrics_table(runs)) == {
        ("a", "cached"): (None, "true", None),
        ("a", "share"): (0.5, None, None),
        ("b", "cached"): (None, "false", None),
        ("b", "share"): (None, "true", None),
        ("c", "share"): (1.0, None, None),
    }


def test_a_key_holding_json_null_is_a_row_apart_from_an_absent_key() -> None:
    runs = [
        {"job_id": "a", "metrics": {"rows": 5, "costs": {"usd": None}}},
        {"job_id": "b", "metrics": {"rows": None, "costs": {"usd": 0.5}}},
        {"job_id": "c", "metrics": {"costs": {"eur": 1}}},
    ]
    assert metric_rows(metrics_table(runs)) == {
        ("a", "rows"): (5.0, None, None),
        ("a", "costs.usd"): (None, "null", None),
        ("b", "rows"): (None, "null", None),
        ("b", "costs.usd"): (0.5, None, None),
        ("c", "costs.eur"): (1.0, None, None),
    }


def test_a_key_holding_numbers_in_some_runs_and_text_in_others_keeps_each_as_sent() -> None:
    runs: list[dict[str, Any]] = [
        {"job_id": f"r{i}", "metrics": {"row_count": i, "rows_in": i}} for i in range(50)
    ]
    runs[7]["metrics"]["row_count"] = "unknown"
    runs[9]["metrics"]["row_count"] = {"estimate": 12}
    rows = metric_rows(metrics_table(runs))
    assert rows[("r7", "row_count")] == (None, '"unknown"', None)
    assert rows[("r9", "row_count.estimate")] == (12.0, None, None)
    assert ("r9", "row_count") not in rows
    assert rows[("r8", "row_count")] == (8.0, None, None)
    assert len(rows) == 100


def test_integers_beyond_a_doubles_precision_are_rounded_not_a_failure() -> None:
    big = 2**60 + 1
    # Alone, among smaller numbers, among text, and past the int64 range (orjson reads up
    # to 2**64 - 1 as an integer).
    runs = [
        {"job_id": "a", "metrics": {"n": big, "m": 2**64 - 1}},
        {"job_id": "b", "metrics": {"n": 5, "m": "unknown"}},
    ]
    rows = metric_rows(metrics_table(runs))
    assert rows[("a", "n")] == (float(big), None, None)
    assert rows[("a", "m")] == (float(2**64 - 1), None, None)
    assert rows[("b", "n")] == (5.0, None, None)
    assert rows[("b", "m")] == (None, '"unknown"', None)
    assert metric_rows(metrics_table(runs[:1]))[("a", "n")] == (float(big), None, None)


def test_lists_empty_objects_and_text_are_kept_as_json_text() -> None:
    runs = [
        {"job_id": "a", "metrics": {"tags": ["x", 1], "extra": {}, "note": 'say "hi"'}},
        {"job_id": "b", "metrics": {"tags": [], "extra": {"k": "v"}}},
    ]
    assert metric_rows(metrics_table(runs)) == {
        ("a", "tags"): (None, '["x",1]', None),
        ("a", "extra"): (None, "{}", None),
        ("a", "note"): (None, '"say \\"hi\\""', None),
        ("b", "tags"): (None, "[]", None),
        ("b", "extra.k"): (None, '"v"', None),
    }


def test_metrics_that_are_not_an_object_are_kept_whole_under_an_empty_name() -> None:
    runs: list[dict[str, Any]] = [
        {"job_id": "a", "metrics": [1, 2]},
        {"job_id": "b", "metrics": 0.5},
        {"job_id": "c", "metrics": "n/a"},
        {"job_id": "d", "metrics": 0},
    ]
    assert metric_rows(metrics_table(runs)) == {
        ("a", ""): (None, "[1,2]", None),
        ("b", ""): (0.5, None, None),
        ("c", ""): (None, '"n/a"', None),
        ("d", ""): (0.0, None, None),
    }


def test_a_run_without_metrics_gets_one_marker_row() -> None:
    runs: list[dict[str, Any]] = [
        {"job_id": "a", "metrics": None},
        {"job_id": "b"},
        {"job_id": "c", "metrics": {}},
        {"job_id": "d", "metrics": {"rows": 1}},
    ]
    table = metrics_table(runs)
    assert metric_rows(table) == {
        ("a", ""): (None, None, True),
        ("b", ""): (None, None, True),
        ("c", ""): (None, None, True),
        ("d", "rows"): (1.0, None, None),
    }
    assert table.column(METRICS_MARKER).to_pylist().count(True) == 3
    assert metrics_table([]).num_rows == 0


def page_run(**fields: Any) -> dict[str, Any]:
    run = {
        "job_id": "j1",
        "workflow_id": "w1",
        "status": "completed",
        "updated_at": "2026-10-31T05:11:47Z",
        "queued_at": "2026-10-31T05:00:00+01:00",
    }
    run.update(fields)
    return {k: v for k, v in run.items() if v is not _ABSENT}


_ABSENT = object()


def test_page_keys_read_ids_instants_statuses_and_the_oldest_queued_run() -> None:
    runs = [page_run(), page_run(job_id="j2", queued_at="2026-10-31T03:00:00", status="running")]
    keys = shaping.page_keys(runs, "/workflows/runs")
    assert list(keys.job_ids) == ["j1", "j2"]
    assert list(keys.statuses) == ["completed", "running"]
    expected = datetime(2026, 10, 31, 5, 11, 47, tzinfo=UTC)
    assert keys.updated == [int(expected.timestamp() * 1_000_000)] * 2
    assert keys.oldest_queued == datetime(2026, 10, 31, 3, 0, tzinfo=UTC)
    assert shaping.page_keys([], "/workflows/runs").oldest_queued is None


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"job_id": _ABSENT}, "without its required field 'job_id'"),
        ({"workflow_id": None}, "j2 without its required field 'workflow_id'"),
        ({"status": ""}, "j2 without its required field 'status'"),
        ({"queued_at": _ABSENT}, "j2 without its required field 'queued_at'"),
        ({"job_id": 7}, "a job_id that is not a string"),
        ({"workflow_id": ["w1"]}, "a workflow_id that is not a string"),
        ({"queued_at": "0001-01-01T00:00:00+01:00"}, "a queued_at out of range"),
        ({"updated_at": "yesterday"}, "unreadable updated_at: 'yesterday'"),
    ],
)
def test_a_page_with_a_run_missing_what_the_sync_relies_on_is_refused(
    fields: dict[str, Any], words: str
) -> None:
    runs = [page_run(), page_run(**{"job_id": "j2", **fields}), page_run(job_id="j3")]
    with pytest.raises(ApiResponseError) as raised:
        shaping.page_keys(runs, "/workflows/runs")
    assert words in str(raised.value)


def reference_page_instants(runs: Sequence[dict[str, Any]]) -> tuple[Any, ...]:
    """What the sync made of a page's updated_at and queued_at when Arrow read them all."""
    try:
        updated = to_utc_array([run["updated_at"] for run in runs])
        queued = to_utc_array([run["queued_at"] for run in runs])
        return ("ok", updated.cast(pa.int64()).to_pylist(), pc.min(queued).as_py())
    except BadTimestamp as exc:
        return ("out of range",) if exc.out_of_range else ("unreadable",)


def page_instants(runs: Sequence[dict[str, Any]]) -> tuple[Any, ...]:
    try:
        keys = shaping.page_keys(runs, "/workflows/runs")
    except ApiResponseError as exc:
        if "out of range" in str(exc):
            return ("out of range",)
        assert "unreadable" in str(exc)
        return ("unreadable",)
    return ("ok", list(keys.updated), keys.oldest_queued)


@pytest.mark.parametrize("seed", SEEDS)
def test_page_keys_read_instants_as_arrow_does_on_random_pages(seed: int) -> None:
    rng = random.Random(seed)
    outcomes = set()
    for page in range(150):
        clean = rng.random() < 0.7
        runs = []
        for index in range(rng.choice([1, 3, 20, 200])):
            updated, queued = (random_timestamp(rng, clean) for _ in range(2))
            if updated and queued:  # a run without them is refused before they are read
                runs.append(page_run(job_id=f"j{index}", updated_at=updated, queued_at=queued))
        if runs:
            want = reference_page_instants(runs)
            assert page_instants(runs) == want, (seed, page)
            outcomes.add(want[0])
    assert "ok" in outcomes


def test_page_keys_of_emulated_pages_are_read_without_arrow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs = emulated_runs(1000)
    want = reference_page_instants(runs)

    def by_arrow(*args: Any) -> None:
        raise AssertionError("read by Arrow")

    monkeypatch.setattr(shaping, "timestamp_column", by_arrow)
    assert page_instants(runs) == want


@pytest.fixture
def local_zone_not_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Another local zone than UTC, so that a value read as local time shows."""
    monkeypatch.setenv("TZ", "America/St_Johns")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("local_zone_not_utc")
def test_page_keys_read_every_form_the_api_may_send(monkeypatch: pytest.MonkeyPatch) -> None:
    read_by_arrow: list[str] = []
    arrow_reading = shaping.timestamp_column

    def counted(columns: dict[str, pa.Array], name: str, values: Any, where: str) -> None:
        read_by_arrow.append(name)
        arrow_reading(columns, name, values, where)

    monkeypatch.setattr(shaping, "timestamp_column", counted)

    def keys(updated: list[str], queued: list[str]) -> tuple[tuple[Any, ...], bool]:
        runs = [
            page_run(job_id=f"j{i}", updated_at=u, queued_at=q)
            for i, (u, q) in enumerate(zip(updated, queued, strict=True))
        ]
        read_by_arrow.clear()
        got = page_instants(runs)
        assert got == reference_page_instants(runs), (updated, queued)
        return got, not read_by_arrow

    python_reads = [
        "2026-10-31T05:11:47.5Z",
        "2026-10-31T10:56:47.123456+05:45",
        "2026-10-31T00:11:47-05",
        "2026-10-31T05:11:47",
        "2026-10-31 05:11:47.25",
        "2026-10-31T05:11:47.123456789Z",
        "20261031T051147Z",
    ]
    got, by_python = keys(python_reads, list(reversed(python_reads)))
    assert by_python and got[2] == datetime(2026, 10, 31, 5, 11, 47, tzinfo=UTC)
    assert got[1][3] == to_micros(datetime(2026, 10, 31, 5, 11, 47, tzinfo=UTC))
    # A lowercase z: Arrow's path, which reads it all the same.
    got, by_python = keys(["2026-10-31T05:11:47.5z"], ["2026-10-31T05:11:47z"])
    assert not by_python and got[0] == "ok"
    # In UTC before year 1 or after 9999: as the thorough path decides (here with another
    # value Arrow's cast refuses, so each value is read alone).
    assert keys(["9999-12-31T23:00:00-05:00", python_reads[5]], python_reads[:2])[0] == (
        "out of range",
    )
    got, by_python = keys(python_reads[:2], ["0001-01-01T00:00:00+05:00", python_reads[0]])
    assert not by_python
