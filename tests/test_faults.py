"""HTTP and API faults: retries, rate limits, refused keys, bad requests, malformed bodies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipelines.emulator import Fault
from pipelines.emulator.faults import LONE_SURROGATE_READ
from pipelines.sixtyfour.bounds import check_bounds
from pipelines.sixtyfour.client import _parse_json
from pipelines.sixtyfour.errors import ApiResponseError, ConfigError
from tests.conftest import API_KEY, Harness, cli_env, run_cli


def warehouse_snapshot(harness: Harness) -> tuple[object, ...]:
    return (
        harness.rows("select job_id, status, updated_at from sixtyfour.workflow_runs order by 1"),
        harness.rows("select count(*) from sixtyfour.workflow_runs__metrics"),
    )


def last_ledger(harness: Harness) -> dict[str, object]:
    return harness.dicts("select * from sixtyfour.sync_runs order by started_at desc limit 1")[0]


def test_server_errors_are_retried_and_counted(harness: Harness) -> None:
    harness.server.faults.add(Fault(status=503, times=2, path="/workflows/runs"))
    harness.server.faults.add(Fault(status=500, times=1, path="/workflows"))
    report = harness.sync(details=False)
    assert report.status == "ok"
    assert report.http_retries >= 3
    assert last_ledger(harness)["api_requests"] == harness.server.request_count


def test_429_with_retry_after_is_honoured(harness: Harness) -> None:
    harness.server.faults.add(Fault.rate_limit_exhausted(retry_after=0.3, times=2))
    report = harness.sync(details=False)
    assert report.status == "ok"
    assert report.rate_limited == 2
    assert last_ledger(harness)["rate_limited"] == 2


def test_429_without_retry_after_backs_off_and_succeeds(harness: Harness) -> None:
    harness.server.faults.add(Fault(status=429, times=2))
    report = harness.sync(details=False)
    assert report.status == "ok" and report.rate_limited == 2


def test_dropped_connections_and_slow_answers_are_retried(harness: Harness) -> None:
    harness.server.faults.add(Fault(drop_connection=True, times=2))
    harness.server.faults.add(Fault(delay=1.5, times=1, query={"status": "active"}))
    report = harness.sync(details=False, timeout_seconds=0.5)
    assert report.status == "ok"
    assert report.http_retries >= 3


def test_api_that_keeps_failing_exits_6_and_leaves_the_warehouse_as_it_was(
    harness: Harness,
) -> None:
    assert run_cli(harness, "run", "--no-details").returncode == 0
    before = warehouse_snapshot(harness)
    harness.world.advance(3600, new_runs=50)
    harness.server.faults.add(Fault(status=502, times=100))
    result = run_cli(harness, "run", "--no-details", SOURCES__SIXTYFOUR__MAX_RETRIES="2")
    assert result.returncode == 6, result.stderr
    assert result.stderr.count("\n") == 1 and "kept failing" in result.stderr
    assert warehouse_snapshot(harness) == before
    ledger = last_ledger(harness)
    assert ledger["status"] == "failed" and "502" in str(ledger["error"])
    harness.server.faults.clear()
    assert run_cli(harness, "run", "--no-details").returncode == 0


def test_a_5xx_that_retrying_cannot_fix_exits_5_at_once(harness: Harness) -> None:
    harness.server.faults.add(Fault(status=501, times=100))
    result = run_cli(harness, "run", "--no-details")
    assert result.returncode == 5, result.stderr
    assert result.stderr.count("\n") == 1 and "501" in result.stderr
    # The first two requests go out together; neither is sent again.
    queries = [tuple(sorted(q.items())) for _, _, q, _ in harness.server.requests]
    assert len(queries) <= 2 and len(set(queries)) == len(queries)


def test_rejected_key_exits_2_without_retrying(harness: Harness) -> None:
    result = run_cli(harness, "run", SOURCES__SIXTYFOUR__API_KEY="not-the-key")
    assert result.returncode == 2
    assert "API key was rejected" in result.stderr
    assert "SOURCES__SIXTYFOUR__API_KEY" in result.stderr
    # The first two requests go out together; neither is sent again.
    queries = [tuple(sorted(q.items())) for _, _, q, _ in harness.server.requests]
    assert len(queries) <= 2 and len(set(queries)) == len(queries)


def test_forbidden_exits_2(harness: Harness) -> None:
    harness.server.faults.add(Fault(status=403))
    result = run_cli(harness, "run")
    assert result.returncode == 2 and "403" in result.stderr


def test_missing_key_exits_2_before_any_request(harness: Harness) -> None:
    result = run_cli(harness, "run", SOURCES__SIXTYFOUR__API_KEY="")
    assert result.returncode == 2
    assert "no API key" in result.stderr and result.stderr.count("\n") == 1
    assert harness.server.request_count == 0


def test_refused_request_exits_5_with_the_apis_own_message(harness: Harness) -> None:
    harness.server.faults.add(Fault(status=422, times=1))
    result = run_cli(harness, "run")
    assert result.returncode == 5, result.stderr
    assert "422" in result.stderr
    assert harness.server.request_count <= 2  # no retry of the refused request


MALFORMED = {
    "html": (Fault.html_page, "not JSON"),
    "truncated": (Fault.truncated_json, "not JSON"),
    "object": (Fault.object_instead_of_list, "not a list"),
    "no job_id": (Fault.run_without_job_id, "job_id"),
    "bad timestamp": (Fault.bad_timestamp, "updated_at"),
}


def test_malformed_bodies_stop_the_sync_before_anything_is_written(harness: Harness) -> None:
    assert run_cli(harness, "run", "--no-details").returncode == 0
    harness.world.advance(3600, new_runs=700)  # the next sync narrows: many pages
    before = warehouse_snapshot(harness)
    late_page = {"workflow_id": harness.world.workflows()[-1]["id"]}
    for name, (make_fault, words) in MALFORMED.items():
        # The fault hits a page late in the sync, after other pages were read.
        harness.server.faults.add(make_fault(path="/workflows/runs", query=late_page))
        result = run_cli(harness, "run", "--no-details")
        assert result.returncode == 5, (name, result.stderr)
        assert words in result.stderr, (name, result.stderr)
        assert result.stderr.count("\n") == 1, (name, result.stderr)
        assert warehouse_snapshot(harness) == before, name
        assert last_ledger(harness)["status"] == "failed"
    result = run_cli(harness, "run", "--no-details")
    assert result.returncode == 0, result.stderr
    (runs,) = harness.rows("select count(*) from sixtyfour.workflow_runs")[0]
    assert runs == len(harness.world.runs())


def test_a_lone_surrogate_is_stored_as_a_replacement_character(harness: Harness) -> None:
    # JSON's grammar allows the escape; refused, the page would fail every sync reading it.
    harness.server.faults.add(Fault.lone_surrogate(field="error_message", times=10_000))
    result = run_cli(harness, "run", "--no-details")
    assert result.returncode == 0, result.stderr
    assert "lone UTF-16 surrogate" in result.stderr and "U+FFFD" in result.stderr
    stored = harness.rows(
        "select error_message, count(*) from sixtyfour.workflow_runs group by all"
    )
    assert stored == [(LONE_SURROGATE_READ, len(harness.world.runs()))]


def test_a_live_status_that_does_not_say_whether_the_run_ended_is_asked_again(
    harness: Harness,
) -> None:
    harness.sync(details=False)
    job_id = harness.world.in_flight()[-1]
    harness.world.advance(60)
    harness.world.set_status(job_id, "completed")

    def without_the_run(body: bytes) -> bytes:  # no list shows it: only live_status can
        runs = orjson.loads(body)
        if not isinstance(runs, list):
            return body  # a live_status: the fault's path is a prefix of its path
        return orjson.dumps([run for run in runs if run.get("job_id") != job_id])

    def without_overall_status(body: bytes) -> bytes:
        return orjson.dumps({**orjson.loads(body), "overall_status": None})

    live_path = f"/workflows/runs/{job_id}/live_status"
    harness.server.faults.add(Fault(transform=without_overall_status, path=live_path, times=1))
    harness.server.faults.add(Fault(transform=without_the_run, path="/workflows/runs", times=10**6))
    stored = f"select status from sixtyfour.workflow_runs where job_id = '{job_id}'"
    before = harness.rows(stored)
    assert harness.sync(details=False).status == "ok"
    assert harness.rows(stored) == before != [("completed",)]  # still tracked, not guessed
    assert harness.sync(details=False).status == "ok"  # live_status says it now
    assert harness.rows(stored) == [("completed",)]


def test_nul_characters_anywhere_are_replaced_and_escaped_text_kept() -> None:
    body = b'[{"a\\u0000b": ["x\\u0000y", {"c": "\\\\u0000 is how JSON writes a NUL"}]}]'
    assert _parse_json(body, "/workflows/runs") == [
        {"a\ufffdb": ["x\ufffdy", {"c": "\\u0000 is how JSON writes a NUL"}]}
    ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'[{"a": "x\\ud800y"}]', [{"a": "x\ufffdy"}]),
        (
            b'{"\\udc00": ["\\ud83d", {"b": "\\ud83d\\ude00 \\udfff"}]}',
            {"\ufffd": ["\ufffd", {"b": "\U0001f600 \ufffd"}]},
        ),
        # Numbers as orjson reads them: past 64 bits (either sign) as floats.
        (
            b'["\\ud800", 18446744073709551615, 18446744073709551616, -9223372036854775809]',
            ["\ufffd", 2**64 - 1, float(2**64), float(-(2**63) - 1)],
        ),
    ],
)
def test_lone_surrogates_anywhere_are_replaced(body: bytes, expected: object) -> None:
    assert _parse_json(body, "/workflows/runs") == expected


@pytest.mark.parametrize(
    "body",
    [
        b'[{"a": NaN, "b": "\\ud800"}]',  # NaN is not JSON: the body stays refused
        b'[1e400, "\\ud800"]',  # past a double's range, which orjson refuses too
        b'["\\ud800", ' + b"1" + b"0" * 400 + b"]",  # an integer past it, too
        b'["\\ud800", -' + b"1" + b"0" * 400 + b"]",
        b"1" + b"0" * 400,  # the same without a surrogate
        b'["\xed\xa0\x80"]',  # a surrogate written as bytes: not UTF-8
        b'\xef\xbb\xbf["\\ud800"]',  # a byte order mark, which orjson refuses
        '["\\ud800"]'.encode("utf-16"),  # not UTF-8
        b'[{"a": "\\ud800"',  # cut short
        b"[" * 1100 + b"]" * 1100,  # deeper than orjson reads, without a surrogate
        b"[" * 600 + b'"\\ud800"' + b"]" * 600,  # deeper than Python's reader goes, with one
        b'["\xff"]',  # not UTF-8
    ],
)
def test_bodies_that_are_not_json_stay_refused(body: bytes) -> None:
    with pytest.raises(ApiResponseError, match="not JSON"):
        _parse_json(body, "/workflows/runs")


def test_client_pacing_keeps_a_narrowing_sync_under_the_apis_budget(tmp_path: object) -> None:
    from pathlib import Path

    from pipelines.emulator import EmulatorServer
    from tests.conftest import API_KEY, make_harness

    for harness in make_harness(Path(str(tmp_path))):
        budgeted = EmulatorServer(harness.world, api_key=API_KEY, rate_limit_per_minute=12)
        harness.server = budgeted.start()
        try:
            report = harness.sync(details=False, rate_limit_per_minute=12)
        finally:
            budgeted.stop()
        assert report.status == "ok"
        assert report.rate_limited == 0
        assert report.api_requests > 2


def test_wrong_base_url_exits_5_naming_the_request(harness: Harness) -> None:
    result = run_cli(harness, "run", SOURCES__SIXTYFOUR__BASE_URL=harness.server.base_url + "/v1")
    assert result.returncode == 5, result.stderr
    assert "404" in result.stderr and "/workflows/runs" in result.stderr
    assert result.stderr.count("\n") == 1


def test_retry_after_longer_than_the_longest_wait_is_cut_short(harness: Harness) -> None:
    import time

    harness.server.faults.add(Fault.rate_limit_exhausted(retry_after=30, times=1))
    started = time.monotonic()
    report = harness.sync(details=False, max_retry_wait_seconds=0.2)
    assert report.status == "ok" and report.rate_limited == 1
    assert time.monotonic() - started < 15  # not the 30 s the API asked for


def test_a_setting_with_a_bad_value_exits_2_naming_it(harness: Harness) -> None:
    result = run_cli(harness, "run", SOURCES__SIXTYFOUR__LAG_SECONDS="soon")
    assert result.returncode == 2, result.stderr
    assert "lag_seconds" in result.stderr and result.stderr.count("\n") == 1
    assert "must be a number" in result.stderr
    assert harness.server.request_count == 0


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("LAG_SECONDS", "-600", "seconds from 0 to a year"),  # would skip runs silently
        ("LAG_SECONDS", "nan", "seconds from 0 to a year"),
        ("RATE_LIMIT_PER_MINUTE", "0.5", "0 (no limit) or a number of requests per minute"),
        ("TIMEOUT_SECONDS", "0", "seconds above 0"),
        ("WORKFLOWS_REFRESH_HOURS", "inf", "hours from 0 to a year"),
    ],
)
def test_a_setting_out_of_its_range_exits_2_naming_it_and_keeps_what_is_loaded(
    harness: Harness, name: str, value: str, words: str
) -> None:
    assert run_cli(harness, "run", "--no-details").returncode == 0
    stored = "select job_id, updated_at from sixtyfour.workflow_runs order by 1"
    loaded = harness.rows(stored)
    harness.world.advance(600, new_runs=20)
    harness.server.reset_stats()
    setting: dict[str, Any] = {f"SOURCES__SIXTYFOUR__{name}": value}
    result = run_cli(harness, "run", "--no-details", **setting)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert f"sources.sixtyfour.{name.lower()}" in result.stderr and words in result.stderr
    assert harness.server.request_count == 0
    assert harness.rows(stored) == loaded


def test_settings_at_the_ends_of_their_ranges_are_taken() -> None:
    check_bounds(
        lag_seconds=0,
        rate_limit_per_minute=0,  # no limit
        concurrency=1,
        max_detail_requests=0,
        max_retries=0,
        max_retry_wait_seconds=0,
        workflows_refresh_hours=8760,
        timeout_seconds=0.5,
    )
    check_bounds(lag_seconds=365 * 86_400, rate_limit_per_minute=1)
    with pytest.raises(ConfigError, match="max_retries"):
        check_bounds(max_retries=-1)
    with pytest.raises(ConfigError, match="lag_seconds"):
        check_bounds(lag_seconds=365 * 86_400 + 1)


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (
            (),
            {"SIXTYFOUR_SYNC__DUCKDB_MEMORY_LIMIT": "lots"},
            "SIXTYFOUR_SYNC__DUCKDB_MEMORY_LIMIT",
        ),
        ((), {"SOURCES__SIXTYFOUR__DETAILS": "maybe"}, "must be true or false"),
        (("--destination", "nosuchdb"), {}, "unknown destination 'nosuchdb'"),
        (("--destination", "postgres"), {}, "DESTINATION__POSTGRES__CREDENTIALS"),
    ],
)
def test_bad_settings_exit_2_with_one_line_saying_what_to_fix(
    harness: Harness, tmp_path: object, args: tuple[str, ...], env: dict[str, str], named: str
) -> None:
    environment = cli_env(harness, DLT_PROJECT_DIR=str(tmp_path), **env)
    environment.pop("DESTINATION__POSTGRES__CREDENTIALS", None)
    result = subprocess.run(
        [sys.executable, "-m", "pipelines", "run", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        cwd=harness.duckdb_path.parent,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert named in result.stderr and API_KEY not in result.stderr
    assert harness.server.request_count == 0


def test_duckdbs_connection_string_names_the_same_file(harness: Harness) -> None:
    url = f"duckdb:///{harness.duckdb_path}"
    result = run_cli(harness, "run", "--no-details", DESTINATION__DUCKDB__CREDENTIALS=url)
    assert result.returncode == 0, result.stderr
    assert harness.rows("select count(*) from sixtyfour.workflow_runs")[0][0] > 0
    assert not (harness.duckdb_path.parent / "duckdb:").exists()


def test_an_empty_details_setting_means_the_default_on(harness: Harness) -> None:
    for _ in range(2):  # the second sync reads the detail of runs the first one loaded
        result = run_cli(harness, "run", SOURCES__SIXTYFOUR__DETAILS="")
        assert result.returncode == 0, result.stderr
    assert int(last_ledger(harness)["detail_requests"]) > 0  # type: ignore[call-overload]


def test_a_bad_warehouse_setting_exits_2_naming_it(harness: Harness) -> None:
    result = run_cli(harness, "run", SIXTYFOUR_SYNC__DUCKDB_THREADS="many")
    assert result.returncode == 2, result.stderr
    assert "duckdb_threads" in result.stderr and result.stderr.count("\n") == 1
    assert harness.server.request_count == 0


def test_a_duckdb_file_whose_folder_cannot_be_made_exits_2_naming_the_setting(
    harness: Harness, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    path = tmp_path / "a-file" / "warehouse.duckdb"
    result = run_cli(harness, "run", DESTINATION__DUCKDB__CREDENTIALS=str(path))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "DESTINATION__DUCKDB__CREDENTIALS" in result.stderr
    assert harness.server.request_count == 0


def test_a_workflow_the_key_may_not_see_is_a_gap_not_a_failure(harness: Harness) -> None:
    assert run_cli(harness, "run", "--no-details").returncode == 0
    hidden = harness.world.workflows()[0]["id"]
    harness.world.advance(3600, new_runs=700)  # the next sync narrows by workflow
    harness.server.faults.add(Fault(status=403, query={"workflow_id": hidden}, times=10))
    result = run_cli(harness, "run", "--no-details")
    assert result.returncode == 3, result.stderr
    assert hidden in result.stderr and "may not see" in result.stderr
    (loaded,) = harness.rows(
        f"select count(*) from sixtyfour.workflow_runs where workflow_id != '{hidden}'"
    )[0]
    expected = sum(1 for r in harness.world.runs() if r["workflow_id"] != hidden)
    assert loaded == expected


def test_a_merge_beyond_duckdbs_memory_limit_exits_2_and_the_next_sync_loads_it(
    harness: Harness,
) -> None:
    assert run_cli(harness, "backfill", "--no-details").returncode == 0
    harness.world.advance(600, new_runs=40)
    # A second backfill merges every run again: its delete needs more than 8MB here.
    result = run_cli(harness, "backfill", "--no-details", SIXTYFOUR_SYNC__DUCKDB_MEMORY_LIMIT="8MB")
    assert result.returncode == 2, result.stderr
    error = result.stderr.splitlines()[-1]
    assert error.startswith("error: DuckDB ran out of memory within its limit (8MB)")
    assert "SIXTYFOUR_SYNC__DUCKDB_MEMORY_LIMIT" in error and "fetched is kept" in error
    # dlt logs each retry of the failing job with its traceback; only --verbose shows them.
    assert "Traceback" not in result.stderr
    again = run_cli(harness, "run", "--no-details")
    assert again.returncode == 0, again.stderr
    assert "loading what it had fetched first" in again.stderr
    (runs,) = harness.rows("select count(*) from sixtyfour.workflow_runs")[0]
    assert runs == len(harness.world.runs()) and harness.duplicate_runs() == 0
    assert harness.repeated_keys("workflow_runs__metrics", "job_id, metric") == 0


def test_duckdbs_ways_of_running_out_of_memory_are_told_from_other_errors() -> None:
    import duckdb

    from pipelines.runner import _out_of_memory

    assert _out_of_memory(duckdb.OutOfMemoryException("Out of Memory Error: ..."))
    commit = "Failed to commit: failed to pin block of size 256.0 KiB (5.6 MiB/5.7 MiB used)"
    assert _out_of_memory(duckdb.TransactionException(commit))
    assert not _out_of_memory(duckdb.TransactionException("Conflict on tuple deletion"))
    assert not _out_of_memory(ValueError("out of memory"))  # not DuckDB's


def test_a_runs_list_that_is_not_found_points_at_the_base_url(harness: Harness) -> None:
    # What an address that is not the API's (a path too many, another service) answers.
    harness.server.faults.add(Fault(status=404, path="/workflows/runs", query={}, times=20))
    result = run_cli(harness, "run", "--no-details")
    assert result.returncode == 5, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "answered 404" in result.stderr and "SOURCES__SIXTYFOUR__BASE_URL" in result.stderr


def test_status_before_any_sync_says_so_and_leaves_no_file(harness: Harness) -> None:
    result = run_cli(harness, "status")
    assert result.returncode == 0, result.stderr
    assert "no sync recorded yet" in result.stdout
    assert not harness.duckdb_path.exists()
