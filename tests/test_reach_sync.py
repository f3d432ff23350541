"""Reaching every change past the 500-run cap: narrowing, in-flight follow-up, gaps, detail."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines.emulator import Fault
from pipelines.sixtyfour import settings
from pipelines.sixtyfour.changes import ChangeFilter
from pipelines.sixtyfour.client import RunsBody, SixtyfourClient
from pipelines.sixtyfour.reader import ChangeReader
from tests.conftest import API_KEY, Harness, make_harness, run_cli
from tests.test_sync_core import assert_warehouse_matches_api, flatten_metrics


def list_requests(harness: Harness) -> list[dict[str, str]]:
    return [query for _, path, query, _ in harness.server.requests if path == "/workflows/runs"]


def test_more_than_500_new_runs_over_many_workflows_all_arrive(harness: Harness) -> None:
    harness.sync()
    harness.world.advance(3600, new_runs=900)
    report = harness.sync(details=False)
    assert report.status == "ok", report.gap_detail
    assert report.partitions > 2  # it had to narrow by workflow
    assert_warehouse_matches_api(harness)


def test_run_queued_far_outside_the_newest_500_that_finishes_later_is_updated(
    harness: Harness,
) -> None:
    now = harness.world.now
    (old,) = harness.world.add_runs(
        1, status="running", queued_between=(now - timedelta(days=20), now - timedelta(days=19))
    )
    harness.sync()
    newest = {run["job_id"] for run in json.loads(harness.world.runs_json(limit=500))}
    assert old not in newest
    harness.world.set_status(old, "completed")
    harness.server.reset_stats()
    harness.sync(details=False)
    # Its workflow's newest 500 still hold it: the final state, metrics included, comes
    # from that list, and no request by id is needed.
    assert_warehouse_matches_api(harness)
    requested = {path for _, path, _, _ in harness.server.requests}
    assert requested == {"/workflows/runs"}


def test_a_run_first_shown_in_flight_with_an_old_timestamp_is_loaded_and_followed(
    harness: Harness,
) -> None:
    # A late write: runs the API shows for the first time, in flight since days ago, so
    # behind the cursor, on the page of runs in flight and also on the newest page.
    harness.sync(details=False)
    now = harness.world.now
    late = set(
        harness.world.add_runs(
            4, status="running", queued_between=(now - timedelta(days=6), now - timedelta(hours=2))
        )
    )
    harness.world.advance(60)
    newest = {run["job_id"] for run in json.loads(harness.world.runs_json(limit=500))}
    assert late <= newest
    # The two pages are asked at once and read as they arrive: the newest page first here.
    harness.server.faults.add(Fault(delay=0.5, query={"status": "active"}))
    report = harness.sync(details=False)
    assert report.status == "ok"
    stored = harness.rows("select job_id, status from sixtyfour.workflow_runs")
    assert {(job_id, "running") for job_id in late} <= set(stored)
    assert_warehouse_matches_api(harness)
    # Stored as in flight, they are followed once they end, off every page the sync reads.
    for job_id in late:
        harness.world.set_status(job_id, "completed")
    harness.world.advance(60, new_runs=600)
    assert harness.sync(details=False).status == "ok"
    assert_warehouse_matches_api(harness)


def test_a_run_stored_in_flight_that_the_api_no_longer_knows_is_asked_for_a_few_syncs_only(
    harness: Harness,
) -> None:
    harness.sync(details=False)
    job = harness.world.in_flight()[-1]
    (stored,) = harness.rows(f"select status from sixtyfour.workflow_runs where job_id = '{job}'")

    def without_it(body: bytes) -> bytes:
        return json.dumps([run for run in json.loads(body) if run["job_id"] != job]).encode()

    # Deleted while in flight: no list shows it, and reading it by id answers 404.
    by_id = f"/workflows/runs/{job}/live_status"
    harness.server.faults.add(Fault(status=404, path=by_id, times=99))
    harness.server.faults.add(Fault(transform=without_it, path="/workflows/runs", times=999))
    for _ in range(settings.UNKNOWN_RUN_TRIES):
        assert harness.sync(details=False).unknown_runs == [job]
    harness.server.reset_stats()
    report = harness.sync(details=False)
    assert report.status == "ok" and report.unknown_runs == []
    assert harness.server.request_count == 2  # the newest page and the page in flight
    assert harness.rows(f"select status from sixtyfour.workflow_runs where job_id = '{job}'") == [
        stored
    ]


@pytest.fixture
def one_workflow(tmp_path: Path) -> Iterator[Harness]:
    yield from make_harness(tmp_path, runs=1200, workflows=1)


def test_run_that_vanished_from_active_is_resolved_through_live_status(
    one_workflow: Harness,
) -> None:
    harness = one_workflow
    harness.sync()
    now = harness.world.now
    (job_id,) = harness.world.add_runs(
        1, status="running", queued_between=(now - timedelta(days=40), now - timedelta(days=40))
    )
    harness.sync(details=False)
    # Far more than 500 of the workflow's runs completed after it was queued: no list shows it.
    harness.world.set_status(job_id, "completed")
    harness.server.reset_stats()
    report = harness.sync(details=False)
    row = harness.dicts(
        f"select status, completed_at from sixtyfour.workflow_runs where job_id = '{job_id}'"
    )[0]
    expected = harness.world.payload(job_id)
    assert row["status"] == "completed" == expected["status"]
    assert row["completed_at"] is not None
    assert report.runs_resolved_by_id == 1
    # The newest page reached back (no narrowing); neither the workflow's own page nor its
    # pages of the statuses a run ends in (completed, failed, cancelled) held it.
    assert len(list_requests(harness)) == 3 + 3
    assert ("GET", f"/workflows/runs/{job_id}/live_status") in {
        (method, path) for method, path, _, _ in harness.server.requests
    }


def test_a_queued_run_no_list_shows_that_started_is_stored_as_running(harness: Harness) -> None:
    world = harness.world
    queued = world.now - timedelta(days=40)
    (job_id,) = world.add_runs(1, status="queued", queued_between=(queued, queued))
    harness.sync(details=False)
    world.advance(60)
    world.set_status(job_id, "running")

    def without_it(body: bytes) -> bytes:
        runs = json.loads(body)
        if not isinstance(runs, list):
            return body  # its live_status
        return json.dumps([run for run in runs if run["job_id"] != job_id]).encode()

    harness.server.faults.add(Fault(transform=without_it, path="/workflows/runs", times=10**6))
    report = harness.sync(details=False)
    assert report.status == "ok" and report.runs_resolved_by_id == 0
    stored = harness.dicts(
        f"select status, started_at from sixtyfour.workflow_runs where job_id = '{job_id}'"
    )
    started_at = datetime.fromisoformat(world.payload(job_id)["started_at"])
    assert stored == [{"status": "running", "started_at": started_at}]
    assert harness.rows(f"select * from sixtyfour.runs_in_flight where job_id = '{job_id}'")


def test_unreachable_burst_is_reported_as_a_gap_with_exit_3_and_a_ledger_row(
    harness: Harness,
) -> None:
    first = run_cli(harness, "run", "--no-details")
    assert first.returncode == 0, first.stderr
    workflow_id = harness.world.workflows()[0]["id"]
    harness.world.advance(3600)  # the burst comes after the last sync
    harness.world.add_runs(700, workflow_id=workflow_id, status="completed")
    result = run_cli(harness, "run", "--no-details")
    assert result.returncode == 3, result.stderr
    assert "gap" in result.stderr and workflow_id in result.stderr
    (status, gap_detected, gap_detail) = harness.rows(
        "select status, gap_detected, gap_detail from sixtyfour.sync_runs "
        "order by started_at desc limit 1"
    )[0]
    assert status == "gap" and gap_detected
    assert f"workflow_id={workflow_id} status=completed" in gap_detail
    # What could be read was loaded: the newest 500 of the burst are there.
    (loaded,) = harness.rows(
        f"select count(*) from sixtyfour.workflow_runs where workflow_id = '{workflow_id}'"
        " and status = 'completed'"
    )[0]
    assert loaded >= 500


def test_steady_state_sync_sends_at_most_3_list_requests(harness: Harness) -> None:
    harness.sync()
    harness.sync(details=False)
    harness.world.advance(120, new_runs=5)
    harness.server.reset_stats()
    report = harness.sync(details=False)
    assert len(list_requests(harness)) <= 3
    assert harness.server.request_count <= 3
    assert report.runs_loaded >= 5


def test_ledger_api_requests_equal_the_emulators_own_count(harness: Harness) -> None:
    harness.sync(details=False)
    harness.world.advance(1800, new_runs=700)
    harness.server.reset_stats()
    harness.sync()
    (requests, partitions, details) = harness.rows(
        "select api_requests, partitions, detail_requests from sixtyfour.sync_runs "
        "order by started_at desc limit 1"
    )[0]
    assert requests == harness.server.request_count
    assert partitions >= 3 and details > 0


def test_block_rows_match_the_emulators_live_status_blocks(harness: Harness) -> None:
    harness.sync(max_detail_requests=30)
    harness.sync(max_detail_requests=30)
    detailed = [job for (job,) in harness.rows("select job_id from sixtyfour.workflow_run_details")]
    assert len(detailed) == 30
    for job_id in detailed[:10]:
        live = harness.world.live_status(job_id)
        rows = harness.dicts(
            "select block_index, block_id, block_name, sequence_number, status, row_count,"
            " processed_count, total_count, error_message from sixtyfour.workflow_runs__blocks"
            f" where job_id = '{job_id}' order by block_index"
        )
        assert len(rows) == len(live["blocks"])
        for row, block in zip(rows, live["blocks"], strict=True):
            assert row["block_id"] == block["block_id"]
            assert row["block_name"] == block["block_name"]
            assert row["sequence_number"] == block["sequence_number"]
            assert row["status"] == block["status"]
            assert row["processed_count"] == block["processed_count"]
            assert row["total_count"] == block["total_count"]
            assert row["row_count"] == (block.get("metrics") or {}).get("row_count")
            assert row["error_message"] == block["error_message"]


def test_detail_reads_are_capped_per_sync_and_the_rest_wait(harness: Harness) -> None:
    harness.sync(max_detail_requests=5)
    report = harness.sync(max_detail_requests=5)
    assert report.detail_requests == 5
    assert report.details_pending > 0
    report = harness.sync(details=False)
    assert report.detail_requests == 0


def _oldest_finished_runs(harness: Harness, count: int) -> list[str]:
    """The runs a sync's detail reads come to first, before any detail was read."""
    rows = harness.rows(
        "select job_id from sixtyfour.workflow_runs where status in ('completed', 'failed', "
        f"'cancelled') order by coalesce(completed_at, updated_at), job_id limit {count}"
    )
    return [str(job_id) for (job_id,) in rows]


@pytest.mark.parametrize("answer", [403, 500])
def test_a_run_whose_live_status_keeps_failing_does_not_stop_the_syncs(
    harness: Harness, answer: int
) -> None:
    assert run_cli(harness, "run").returncode == 0  # a first sync reads no detail
    (job_id,) = _oldest_finished_runs(harness, 1)
    path = f"/workflows/runs/{job_id}/live_status"
    # 403: the key may no longer see the run's workflow; 500: that run's answer is broken.
    harness.server.faults.add(Fault(status=answer, path=path, times=10**6))
    detailed = f"select count(*) from sixtyfour.workflow_run_details where job_id = '{job_id}'"
    syncs_asking = 1 if answer == 403 else settings.DETAIL_READ_TRIES
    for sync in range(syncs_asking + 1):
        asked_before = [p for _, p, _, _ in harness.server.requests].count(path)
        harness.world.advance(600, new_runs=5)
        result = run_cli(harness, "run", SOURCES__SIXTYFOUR__MAX_DETAIL_REQUESTS="20")
        assert result.returncode == 0, result.stderr
        asked = [p for _, p, _, _ in harness.server.requests].count(path) - asked_before
        if sync < syncs_asking:
            assert f"warning: live_status of run {job_id} not read" in result.stderr
            assert ("answered 403" if answer == 403 else "kept failing") in result.stderr
            assert asked == (1 if answer == 403 else 7)  # 500: six retries
            if sync == 0:
                assert "unread live_status: 1" in run_cli(harness, "status").stdout
        else:
            assert asked == 0  # it left the backlog, without its detail
        # The others' detail is read meanwhile.
        assert harness.rows("select count(*) from sixtyfour.workflow_run_details")[0][0] >= 19
        left = sync + 1 >= syncs_asking
        assert harness.rows(detailed) == [(1 if left else 0,)]
        last = "select details_unread from sixtyfour.sync_runs order by started_at desc limit 1"
        assert harness.rows(last) == [(1 if sync < syncs_asking else 0,)]
    assert_warehouse_matches_api(harness)


def test_when_the_api_keeps_failing_on_two_runs_the_others_wait(harness: Harness) -> None:
    harness.sync()  # a first sync reads no detail
    backlog = _oldest_finished_runs(harness, 2)
    failing = {f"/workflows/runs/{job_id}/live_status" for job_id in backlog}
    for path in failing:
        harness.server.faults.add(Fault(status=503, path=path, times=10**6))
    report = harness.sync(max_detail_requests=30, concurrency=1)
    assert report.status == "ok"
    assert [job_id for job_id, _ in report.unread_runs][:2] == backlog
    assert len(report.unread_runs) == 30
    assert report.detail_requests == 2
    asked = {p for _, p, _, _ in harness.server.requests if p.endswith("/live_status")}
    assert asked == failing  # the others were not asked in this sync
    last = "select details_unread from sixtyfour.sync_runs order by started_at desc limit 1"
    assert harness.rows(last) == [(30,)]
    harness.server.faults.clear()
    harness.sync(max_detail_requests=30)
    assert harness.rows("select count(*) from sixtyfour.workflow_run_details") == [(30,)]


@pytest.fixture
def deep_harness(tmp_path: Path) -> Iterator[Harness]:
    # One workflow with more than 500 runs of one status: beyond what any filter shows.
    yield from make_harness(tmp_path, runs=1500, workflows=2)


def test_backfill_reads_deep_merges_and_never_moves_the_cursor_back(
    deep_harness: Harness,
) -> None:
    harness = deep_harness
    first = harness.sync(details=False)
    cursor = first.cursor_after
    report = harness.sync(backfill=True, details=False)
    assert report.cursor_after == cursor
    assert report.runs_loaded == report.runs_seen > 500
    assert harness.duplicate_runs() == 0
    # 750 runs a workflow: completed ones alone exceed 500, so the oldest are out of reach.
    assert report.gaps and all(g.filter.status == "completed" for g in report.gaps)


def test_full_refresh_drops_the_tables_and_reloads(harness: Harness) -> None:
    harness.sync(details=False)
    harness.world.advance(600, new_runs=10)
    report = harness.sync(full_refresh=True, details=False)
    assert report.runs_loaded == len(harness.world.runs())
    (syncs,) = harness.rows("select count(*) from sixtyfour.sync_runs")[0]
    assert syncs == 1  # the ledger started again with the tables
    assert_warehouse_matches_api(harness)


def test_status_command_shows_syncs_cursor_in_flight_and_gaps(harness: Harness) -> None:
    assert run_cli(harness, "run", "--no-details").returncode == 0
    result = run_cli(harness, "status")
    assert result.returncode == 0, result.stderr
    assert "cursor: 20" in result.stdout
    in_flight = len(harness.world.in_flight())
    assert f"runs in flight in the warehouse: {in_flight}" in result.stdout
    assert "open gap: none" in result.stdout
    assert " ok " in result.stdout


def test_a_run_that_ended_behind_a_full_workflow_page_is_taken_from_its_status_page(
    tmp_path: Path,
) -> None:
    for harness in make_harness(tmp_path, runs=1200, workflows=1):
        harness.sync(details=False)
        queued = harness.world.now - timedelta(days=40)
        (job_id,) = harness.world.add_runs(1, status="running", queued_between=(queued, queued))
        harness.sync(details=False)
        harness.world.advance(60)
        harness.world.set_status(job_id, "failed")
        loads = "select count(*) from sixtyfour._dlt_loads"
        (loads_before,) = harness.rows(loads)[0]
        report = harness.sync(details=False)
        assert report.runs_resolved_by_id == 0  # a list showed it, with all its fields
        # In the sync's one load: only a run the sync may have handed on already waits
        # for a second.
        assert harness.rows(loads) == [(loads_before + 1,)]
        api = harness.world.payload(job_id)
        stored = harness.dicts(
            "select status, status_reason, error_message, updated_at "
            f"from sixtyfour.workflow_runs where job_id = '{job_id}'"
        )[0]
        assert stored["status"] == "failed"
        assert (stored["status_reason"], stored["error_message"]) == (
            api["status_reason"],
            api["error_message"],
        )
        metrics = harness.rows(
            "select metric, value, value_text from sixtyfour.workflow_runs__metrics "
            f"where job_id = '{job_id}'"
        )
        assert {m: v if t is None else json.loads(t) for m, v, t in metrics} == flatten_metrics(
            api["metrics"]
        )
        assert harness.duplicate_runs() == 0


def test_a_run_a_follow_up_page_shows_again_after_its_batch_was_handed_on_lands_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small batches stand in for a sync that reads more than RUNS_PER_BATCH runs.
    monkeypatch.setattr(settings, "RUNS_PER_BATCH", 20)
    for harness in make_harness(tmp_path, runs=1500, workflows=3):
        world = harness.world
        workflows = [w["id"] for w in world.workflows()]
        busiest = max(workflows, key=lambda w: sum(r["workflow_id"] == w for r in world.runs()))
        harness.sync(details=False)
        # A run of it queued long ago and still running: the warehouse tracks it.
        queued = world.now - timedelta(days=40)
        (tracked,) = world.add_runs(
            1, workflow_id=busiest, status="running", queued_between=(queued, queued)
        )
        harness.sync(details=False)
        world.advance(7200)
        # It ends behind its workflow's full page, so the follow-up reads that workflow's
        # pages of ended statuses, which show again runs an earlier batch handed on.
        world.set_status(tracked, "completed")
        now = world.now
        added = world.add_runs(
            60, workflow_id=busiest, status="completed",
            queued_between=(now - timedelta(minutes=100), now - timedelta(minutes=90)),
        )  # fmt: skip
        for workflow in workflows:
            if workflow != busiest:
                added += world.add_runs(
                    300, workflow_id=workflow, status="completed",
                    queued_between=(now - timedelta(minutes=10), now),
                )  # fmt: skip
        report = harness.sync(details=False)
        assert report.status == "ok" and report.partitions > 2, report.gap_detail
        assert harness.duplicate_runs() == 0
        assert harness.repeated_keys("workflow_runs__metrics", "job_id, metric") == 0
        assert harness.rows(
            f"select status from sixtyfour.workflow_runs where job_id = '{tracked}'"
        ) == [("completed",)]
        stored = {
            job_id for (job_id,) in harness.rows("select job_id from sixtyfour.workflow_runs")
        }
        assert stored.issuperset(added)


@pytest.fixture
def two_workflows(tmp_path: Path) -> Iterator[Harness]:
    yield from make_harness(tmp_path, runs=1200, workflows=2)


def test_a_run_ending_while_its_workflow_is_read_status_by_status_is_not_lost(
    two_workflows: Harness,
) -> None:
    harness = two_workflows
    world = harness.world
    busy, other = (w["id"] for w in world.workflows())
    harness.sync(details=False)
    world.advance(7200)
    now = world.now
    # More than 500 runs in flight: the active page is full, and `late`, queued first
    # since the last sync, is not on it. Its workflow is read status by status.
    (late,) = world.add_runs(
        1, workflow_id=busy, status="running", queued_between=(now - timedelta(hours=1),) * 2
    )
    world.add_runs(
        300, workflow_id=busy, status="completed",
        queued_between=(now - timedelta(minutes=55), now - timedelta(minutes=30)),
    )  # fmt: skip
    for workflow, in_flight in ((busy, 250), (other, 400)):
        world.add_runs(
            in_flight, workflow_id=workflow, status="running",
            queued_between=(now - timedelta(minutes=30), now - timedelta(minutes=1)),
        )  # fmt: skip
    assert len(world.in_flight()) > 500

    def end_late(body: bytes) -> bytes:
        world.set_status(late, "completed")  # once its workflow's completed page is served
        return body

    harness.server.faults.add(
        Fault(transform=end_late, query={"workflow_id": busy, "status": "completed"})
    )
    # Should the active page come after the completed one, `late` is on neither.
    harness.server.faults.add(Fault(delay=0.5, query={"workflow_id": busy, "status": "active"}))
    stored = f"select status from sixtyfour.workflow_runs where job_id = '{late}'"
    assert harness.sync(details=False).status == "ok"
    assert harness.rows(stored) == [("running",)]  # on the active page, read first
    world.advance(600)
    assert harness.sync(details=False).status == "ok"
    assert harness.rows(stored) == [("completed",)]
    assert harness.duplicate_runs() == 0


def test_a_run_queued_while_a_sync_reads_is_not_lost_with_this_clock_ahead_of_the_apis(
    two_workflows: Harness,
) -> None:
    harness = two_workflows
    world = harness.world
    # The emulator's clock (its Date header, its timestamps) runs weeks behind this machine's.
    assert world.now < datetime.now(UTC) - timedelta(days=1)
    first, second = (w["id"] for w in world.workflows())
    harness.sync(details=False)
    world.advance(7200)
    start = world.now
    for workflow, status in ((first, "completed"), (second, "cancelled")):
        world.add_runs(
            300, workflow_id=workflow, status=status,
            queued_between=(start - timedelta(minutes=10), start),
        )  # fmt: skip
    queued_meanwhile: list[str] = []

    def fifteen_minutes_pass(body: bytes) -> bytes:
        # While the sync reads on, a run is queued in the workflow just read, and many
        # later ones in the other, so that the cursor ends past the first one.
        world.advance(900)
        queued_meanwhile.extend(
            world.add_runs(
                1, workflow_id=first, status="completed",
                queued_between=(start + timedelta(minutes=1),) * 2,
            )
        )  # fmt: skip
        for status in ("completed", "failed"):
            world.add_runs(
                300, workflow_id=second, status=status,
                queued_between=(start + timedelta(minutes=2), world.now),
            )  # fmt: skip
        return body

    harness.server.faults.add(Fault(transform=fifteen_minutes_pass, query={"workflow_id": first}))
    harness.server.faults.add(Fault(delay=0.5, query={"workflow_id": second}))
    report = harness.sync(details=False)
    assert report.status == "ok", report.gap_detail
    world.advance(60)
    report = harness.sync(details=False)
    assert report.status == "ok", report.gap_detail
    (job_id,) = queued_meanwhile
    stored = f"select status from sixtyfour.workflow_runs where job_id = '{job_id}'"
    assert harness.rows(stored) == [("completed",)]


def _listed_wrongly(workflow_id: str, how: str) -> Fault:
    """GET /workflows answered without one workflow, or with it idle for years (the list
    lags, or leaves it out)."""

    def transform(body: bytes) -> bytes:
        items = json.loads(body)
        if not (isinstance(items, list) and items and "id" in items[0]):
            return body  # a runs page
        if how == "missing":
            items = [w for w in items if w["id"] != workflow_id]
        for workflow in items:
            if workflow["id"] == workflow_id:
                workflow["last_run_date"] = "2020-01-01T00:00:00Z"
        return json.dumps(items).encode()

    return Fault(transform=transform, path="/workflows", times=10**6)


@pytest.fixture
def settled_harness(tmp_path: Path) -> Iterator[Harness]:
    # No run in flight: no follow-up reads a workflow's page for a run it tracks.
    yield from make_harness(tmp_path, in_flight_share=0)


@pytest.mark.parametrize("how", ["missing", "idle"])
def test_runs_of_a_workflow_the_workflow_list_leaves_out_are_still_reached(
    settled_harness: Harness, how: str
) -> None:
    harness, world = settled_harness, settled_harness.world
    harness.sync(details=False)
    unlisted = world.workflows()[0]["id"]
    harness.server.faults.add(_listed_wrongly(unlisted, how))
    world.advance(3600, new_runs=900)  # the newest page no longer reaches back: it narrows
    world.advance(7200)  # all of them end
    before = len(list_requests(harness))
    report = harness.sync(details=False)
    assert report.status == "ok", report.gap_detail
    assert report.partitions > 2
    assert_warehouse_matches_api(harness)
    asked = [q for q in list_requests(harness)[before:] if q.get("workflow_id") == unlisted]
    assert asked == [{"limit": "500", "workflow_id": unlisted}]
    # Later syncs showing its runs do not read the list again for it.
    for _ in range(2):
        world.advance(60, new_runs=3, workflow_id=unlisted)
        harness.server.reset_stats()
        assert harness.sync(details=False).runs_loaded >= 3
        assert harness.server.request_count == 2


def test_narrowing_asks_each_workflows_page_once(harness: Harness) -> None:
    harness.sync(details=False)
    harness.world.advance(3600, new_runs=900)
    before = len(list_requests(harness))
    harness.sync(details=False)
    pages = [
        q["workflow_id"]
        for q in list_requests(harness)[before:]
        if set(q) == {"limit", "workflow_id"}
    ]
    assert sorted(pages) == sorted({w["id"] for w in harness.world.workflows()})


def test_a_workflow_the_key_may_not_see_is_asked_once_per_sync_and_one_gap(
    harness: Harness,
) -> None:
    world = harness.world
    hidden = world.workflows()[0]["id"]
    queued = world.now - timedelta(days=40)
    (tracked,) = world.add_runs(
        1, workflow_id=hidden, status="running", queued_between=(queued, queued)
    )
    harness.sync(details=False)
    harness.server.faults.add(Fault(status=403, query={"workflow_id": hidden}, times=10**6))
    world.advance(3600, new_runs=900)  # the newest page no longer reaches back: it narrows
    before = len(list_requests(harness))
    report = harness.sync(details=False)
    assert report.status == "gap"
    assert [g.filter.workflow_id for g in report.gaps] == [hidden]
    asked = [q for q in list_requests(harness)[before:] if q.get("workflow_id") == hidden]
    assert asked == [{"limit": "500", "workflow_id": hidden}]
    # Its run in flight, on no page the key may read, is still followed up by id.
    stored = f"select status from sixtyfour.workflow_runs where job_id = '{tracked}'"
    assert harness.rows(stored) == [(world.payload(tracked)["status"],)]


def test_a_narrowed_workflow_whose_active_page_is_refused_is_not_asked_its_other_statuses(
    one_workflow: Harness,
) -> None:
    harness = one_workflow
    harness.sync(details=False)
    workflow = harness.world.workflows()[0]["id"]
    harness.server.faults.add(
        Fault(status=403, query={"workflow_id": workflow, "status": "active"}, times=10**6)
    )
    harness.world.advance(3600, new_runs=600)  # its page, and the newest, do not reach back
    before = len(list_requests(harness))
    report = harness.sync(details=False)
    statuses = [q.get("status") for q in list_requests(harness)[before:] if q.get("workflow_id")]
    assert statuses == [None, "active"]
    assert [(g.filter.workflow_id, g.filter.status) for g in report.gaps] == [(workflow, "active")]


def test_a_gap_stays_open_after_a_clean_incremental_sync_in_status_and_view(
    deep_harness: Harness,
) -> None:
    harness = deep_harness
    assert run_cli(harness, "run", "--no-details").returncode == 3  # the oldest are out of reach
    harness.world.advance(600, new_runs=5)
    assert run_cli(harness, "run", "--no-details").returncode == 0
    # The second sync read on from its cursor: what the first could not reach is still missing.
    status = run_cli(harness, "status")
    assert status.returncode == 0, status.stderr
    assert "open gap: workflow_id=" in status.stdout
    health = harness.dicts("select status, gap_open from sixtyfour.sync_health")
    assert [row["status"] for row in health] == ["ok", "gap"]
    assert {row["gap_open"] for row in health} == {True}


def test_status_finds_the_cursor_behind_many_failed_syncs(harness: Harness) -> None:
    assert run_cli(harness, "run", "--no-details").returncode == 0
    (cursor,) = harness.rows("select cursor_after from sixtyfour.sync_runs")[0]
    with duckdb.connect(str(harness.duckdb_path)) as db:
        for minute in range(12):
            db.execute(
                "insert into sixtyfour.sync_runs (sync_id, mode, started_at, status, error) "
                f"values ('failed-{minute}', 'run', now() + interval {minute + 1} minute, "
                "'failed', 'API answered 500')"
            )
    result = run_cli(harness, "status")
    assert result.returncode == 0, result.stderr
    assert f"cursor: {cursor.isoformat()}" in result.stdout


def test_when_the_api_refuses_status_failed_hidden_failed_runs_are_a_gap(
    tmp_path: Path,
) -> None:
    from pipelines.emulator import EmulatorServer

    for harness in make_harness(tmp_path):
        strict = EmulatorServer(
            harness.world,
            api_key="test-key-7f3c",
            rate_limit_per_minute=None,
            extra_status_filters=False,
        ).start()
        try:
            harness.server = strict
            harness.sync(details=False)
            workflow_id = harness.world.workflows()[0]["id"]
            harness.world.advance(3600)
            harness.world.add_runs(300, workflow_id=workflow_id, status="failed")
            harness.world.add_runs(300, workflow_id=workflow_id, status="completed")
            report = harness.sync(details=False)
        finally:
            strict.stop()
        assert report.gaps
        assert any("status=failed" in gap.describe() for gap in report.gaps)
        statuses = {q.get("status") for q in list_requests(harness)}
        assert "completed" in statuses


@pytest.fixture
def busy_harness(tmp_path: Path) -> Iterator[Harness]:
    # 750 runs in flight: more than one active page shows.
    yield from make_harness(tmp_path, runs=3000, workflows=6, in_flight_share=0.25)


def test_runs_in_flight_beyond_a_full_active_page_cost_lists_not_one_request_each(
    busy_harness: Harness,
) -> None:
    harness = busy_harness
    harness.sync(details=False)
    assert len(harness.world.in_flight()) > 500
    harness.world.advance(1800, new_runs=10)
    harness.server.reset_stats()
    report = harness.sync(details=False)
    assert report.status == "ok"
    assert_warehouse_matches_api(harness)
    assert harness.server.request_count <= 3 + 1 + 6 + report.runs_resolved_by_id
    assert report.runs_resolved_by_id < 20


def test_backfill_under_cron_logs_plain_progress_lines(harness: Harness) -> None:
    result = run_cli(harness, "backfill", "--no-details")
    assert result.returncode == 0, result.stderr
    assert re.search(r"backfill: \d+/\d+ partitions, \d+ runs, \d+ requests", result.stderr)
    assert "backfill ok:" in result.stdout


def test_finished_runs_the_api_no_longer_details_leave_the_backlog(harness: Harness) -> None:
    from pipelines.emulator import Fault

    harness.sync(details=False)
    harness.server.faults.add(Fault(status=404, path="/workflows/runs/", times=3))
    first = harness.sync(max_detail_requests=3)
    assert first.detail_requests == 3 and not first.unknown_runs
    second = harness.sync(max_detail_requests=3)
    # The three without detail were recorded as read: the backlog moved on.
    (details,) = harness.rows("select count(*) from sixtyfour.workflow_run_details")[0]
    assert details == 6
    assert second.details_pending == first.details_pending - 3


def test_each_workflow_is_reported_read_once_after_its_last_page(harness: Harness) -> None:
    workflow_id = harness.world.workflows()[0]["id"]
    harness.world.add_runs(700, workflow_id=workflow_id, status="completed")
    events: list[tuple[str, str]] = []
    with SixtyfourClient(API_KEY, harness.server.base_url, rate_limit_per_minute=0) as client:
        reader = ChangeReader(
            client,
            watermark=None,
            concurrency=3,
            on_workflow_read=lambda w: events.append(("read", w)),
        )
        for page in reader.pages():
            events.append(("page", page.filter.workflow_id or ""))
    workflows = {w["id"] for w in harness.world.workflows()}
    done = [w for kind, w in events if kind == "read"]
    assert sorted(done) == sorted(workflows)  # once each
    for workflow in workflows:
        pages = [i for i, event in enumerate(events) if event == ("page", workflow)]
        assert pages and max(pages) < events.index(("read", workflow))
    # The full workflow was narrowed by status; its status pages came before it was done.
    assert sum(event == ("page", workflow_id) for event in events) > 1


def test_pages_are_fetched_side_by_side_and_parsed_by_the_thread_reading_them(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Parsing holds the interpreter: done on the fetching threads, it makes the thread that
    # reads the pages wait for it at every turn.
    workflow_id = harness.world.workflows()[0]["id"]
    harness.world.add_runs(700, workflow_id=workflow_id, status="completed")
    fetched_on: set[str] = set()
    parsed_on: set[str] = set()
    fetch, parse = SixtyfourClient.fetch_runs, RunsBody.parse

    def noting_fetch(self: SixtyfourClient, **filters: Any) -> RunsBody:
        fetched_on.add(threading.current_thread().name)
        return fetch(self, **filters)

    def noting_parse(self: RunsBody) -> list[dict[str, Any]]:
        parsed_on.add(threading.current_thread().name)
        return parse(self)

    monkeypatch.setattr(SixtyfourClient, "fetch_runs", noting_fetch)
    monkeypatch.setattr(RunsBody, "parse", noting_parse)
    with SixtyfourClient(API_KEY, harness.server.base_url, rate_limit_per_minute=0) as client:
        reader = ChangeReader(client, watermark=None, concurrency=3)
        pages = list(reader.pages())
    assert len(pages) > 3  # it narrowed, so the pool had work for several threads
    assert parsed_on == {threading.current_thread().name}
    assert threading.current_thread().name not in fetched_on


def test_a_backfill_keeps_only_runs_that_may_show_up_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept: list[int] = []
    save = ChangeFilter.save

    def noting_save(self: ChangeFilter, state: Any) -> None:
        kept.append(len(self.seen))
        save(self, state)

    monkeypatch.setattr(ChangeFilter, "save", noting_save)
    # About 300 runs a workflow: the newest 500 overall do not reach back, each workflow's do.
    for harness in make_harness(tmp_path, runs=6000, workflows=20):
        report = harness.sync(backfill=True, details=False)
        assert not report.gaps
        assert report.runs_loaded == report.runs_seen == len(harness.world.runs())
        assert harness.duplicate_runs() == 0
        assert_warehouse_matches_api(harness)
        # What the pages of all workflows showed, and the runs in flight: not the history.
        in_flight = len(harness.world.in_flight())
        assert kept == [kept[0]] and kept[0] <= 2 * 500 + in_flight < report.runs_seen / 4
