"""The API emulator: what it serves over HTTP, how its world moves, and the faults it injects."""

from __future__ import annotations

import http.client
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from pipelines.emulator import EmulatorServer, Fault, World, WorldConfig, ratelimit

KEY = "test-key"
SMALL = WorldConfig(runs=600, workflows=6, in_flight_share=0.05, blocks_share=0.05)
TIMESTAMPS = ("created_at", "updated_at", "queued_at", "started_at", "completed_at")
TERMINAL = ("completed", "failed", "cancelled")


@dataclass
class Api:
    """A running emulator and a pooled client holding the right key."""

    server: EmulatorServer
    client: httpx.Client

    @property
    def world(self) -> World:
        return self.server.world

    def runs(self, **params: Any) -> httpx.Response:
        return self.client.get("/workflows/runs", params=params)


@pytest.fixture
def serve() -> Iterator[Callable[..., Api]]:
    """Start emulators on loopback (a small world unless given one); stopped after the test."""
    started: list[Api] = []

    def start(world: World | None = None, **options: Any) -> Api:
        server = EmulatorServer(world or World(SMALL), **options).start()
        client = httpx.Client(base_url=server.base_url, headers={"x-api-key": KEY}, timeout=5)
        started.append(Api(server, client))
        return started[-1]

    yield start
    for api in started:
        api.client.close()
        api.server.stop()


def parse(text: str) -> datetime:
    """A served timestamp as an aware datetime; no offset means UTC."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def ids(runs: list[dict[str, Any]]) -> list[str]:
    return [run["job_id"] for run in runs]


# -- GET /workflows/runs ---------------------------------------------------------------------


def test_runs_are_listed_newest_queued_first_up_to_the_limit(serve: Callable[..., Api]) -> None:
    api = serve()
    served = api.runs(limit=500).json()
    assert len(served) == 500
    queued = [parse(run["queued_at"]) for run in served]
    assert queued == sorted(queued, reverse=True)
    assert ids(served) == ids(api.world.runs()[:500])
    assert len(api.runs(limit=1).json()) == 1


def test_limit_defaults_to_100(serve: Callable[..., Api]) -> None:
    assert len(serve().runs().json()) == 100


@pytest.mark.parametrize(
    ("limit", "kind"),
    [("0", "greater_than_equal"), ("501", "less_than_equal"), ("x", "int_parsing")],
)
def test_limit_outside_1_to_500_or_not_an_integer_answers_422(
    serve: Callable[..., Api], limit: str, kind: str
) -> None:
    response = serve().runs(limit=limit)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", "limit"]
    assert error["type"] == kind
    assert error["msg"]


@pytest.mark.parametrize("status", ["running", "completed", "cancelled", "failed", "queued"])
def test_status_filter_lists_only_runs_in_that_status(
    serve: Callable[..., Api], status: str
) -> None:
    api = serve()
    served = api.runs(status=status, limit=500).json()
    expected = [run for run in api.world.runs() if run["status"] == status][:500]
    assert served, f"the small world should hold {status} runs"
    assert ids(served) == ids(expected)


def test_active_filter_lists_queued_and_running_runs(serve: Callable[..., Api]) -> None:
    api = serve()
    served = api.runs(status="active", limit=500).json()
    assert {run["status"] for run in served} == {"queued", "running"}
    assert set(ids(served)) == set(api.world.in_flight())
    assert ids(served) == api.world.in_flight()


def test_failed_and_queued_filters_answer_422_when_extra_filters_are_off(
    serve: Callable[..., Api],
) -> None:
    api = serve(extra_status_filters=False)
    for status in ("failed", "queued"):
        response = api.runs(status=status)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", "status"]
    assert api.runs(status="running").status_code == 200


@pytest.mark.parametrize("status", ["canceled", "succeeded", "ACTIVE", ""])
def test_unknown_status_answers_422(serve: Callable[..., Api], status: str) -> None:
    response = serve().runs(status=status)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert (error["type"], error["loc"], error["input"]) == ("enum", ["query", "status"], status)


def test_workflow_filter_lists_only_that_workflows_runs(serve: Callable[..., Api]) -> None:
    api = serve()
    workflow_id = api.world.workflows()[2]["id"]
    mine = [run for run in api.world.runs() if run["workflow_id"] == workflow_id]
    assert ids(api.runs(workflow_id=workflow_id, limit=500).json()) == ids(mine)
    completed = [run for run in mine if run["status"] == "completed"][:10]
    served = api.runs(workflow_id=workflow_id, status="completed", limit=10).json()
    assert ids(served) == ids(completed)


def test_unknown_workflow_answers_404(serve: Callable[..., Api]) -> None:
    response = serve().runs(workflow_id="00000000-0000-4000-8000-000000000000")
    assert response.status_code == 404
    assert response.json() == {"detail": "Workflow not found"}


# -- auth, paths, limits -----------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}, {"Authorization": KEY}])
def test_missing_or_wrong_api_key_answers_401(
    serve: Callable[..., Api], headers: dict[str, str]
) -> None:
    api = serve()
    with httpx.Client(base_url=api.server.base_url, headers=headers) as stranger:
        for path in ("/workflows", "/workflows/runs"):
            response = stranger.get(path)
            assert response.status_code == 401
            assert response.json() == {"detail": "Invalid API key"}


def test_unknown_paths_answer_404_and_other_methods_405(serve: Callable[..., Api]) -> None:
    api = serve()
    for path in ("/", "/workflow/runs", "/workflows/runs/", "/workflows/runs/x/results"):
        response = api.client.get(path)
        assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})
    assert api.client.post("/workflows/runs", json={"x": 1}).status_code == 405
    assert api.client.get("/workflows/runs").status_code == 200  # connection still in step


def test_every_response_carries_rate_limit_headers(serve: Callable[..., Api]) -> None:
    api = serve(rate_limit_per_minute=50)
    responses = [api.runs(), api.runs(limit=0), api.client.get("/nope")]
    responses.append(api.client.get("/workflows"))
    assert [r.headers["X-RateLimit-Limit"] for r in responses] == ["50"] * 4
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["49", "48", "47", "46"]


def test_requests_past_the_budget_answer_429_with_retry_after(serve: Callable[..., Api]) -> None:
    api = serve(rate_limit_per_minute=5)
    assert [api.runs(limit=1).status_code for _ in range(5)] == [200] * 5
    refused = api.runs(limit=1)
    assert refused.status_code == 429
    assert refused.json() == {"detail": "Rate limit exceeded"}
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert api.server.request_count == 6


def test_retry_after_is_left_out_when_send_retry_after_is_off(serve: Callable[..., Api]) -> None:
    api = serve(rate_limit_per_minute=1, send_retry_after=False)
    api.runs()
    refused = api.runs()
    assert refused.status_code == 429
    assert "Retry-After" not in refused.headers


def test_lifted_rate_limit_never_refuses(serve: Callable[..., Api]) -> None:
    api = serve(rate_limit_per_minute=None)
    assert {api.runs(limit=1).status_code for _ in range(30)} == {200}


def test_window_frees_a_slot_sixty_seconds_after_the_oldest_and_refusals_spend_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(ratelimit.time, "monotonic", lambda: clock[0])
    window = ratelimit.SlidingWindow()
    assert window.hit("k", 2) == (1, 0.0)
    clock[0] += 10
    assert window.hit("k", 2) == (0, 0.0)
    clock[0] += 20
    assert window.hit("k", 2) == (0, 30.0)  # the first request leaves the window at 1060
    clock[0] += 29
    assert window.hit("k", 2)[1] == pytest.approx(1.0)  # refusals did not push it back
    clock[0] += 1
    assert window.hit("k", 2) == (0, 0.0)
    assert window.remaining("other", 2) == 2


# -- live status and workflows ---------------------------------------------------------------

BLOCK_KEYS = {
    "block_id", "block_name", "sequence_number", "previous_block_ids", "status", "started_at",
    "completed_at", "last_updated", "progress_percentage", "current_step", "processed_count",
    "total_count", "estimated_total_count", "error_message", "metrics",
}  # fmt: skip


def _live(api: Api, status: str) -> tuple[dict[str, Any], dict[str, Any]]:
    run = next(run for run in api.world.runs() if run["status"] == status)
    response = api.client.get(f"/workflows/runs/{run['job_id']}/live_status")
    assert response.status_code == 200
    return run, response.json()


def test_live_status_describes_each_block_of_a_finished_run(serve: Callable[..., Api]) -> None:
    api = serve()
    run, live = _live(api, "completed")
    assert (live["run_id"], live["workflow_id"]) == (run["job_id"], run["workflow_id"])
    assert live["overall_status"] == "completed"
    assert live["total_blocks"] == live["completed_blocks"] == run["blocks_count"]
    assert live["overall_progress_percentage"] == 100.0
    assert parse(live["completed_at"]) == run["completed_at"]
    blocks = live["blocks"]
    assert [block["sequence_number"] for block in blocks] == list(range(1, len(blocks) + 1))
    assert all(set(block) == BLOCK_KEYS for block in blocks)
    assert blocks[0]["previous_block_ids"] == []
    assert blocks[1]["previous_block_ids"] == [blocks[0]["block_id"]]
    metrics = {"row_count", "dataframe_type", "processed_count", "total_count"}
    assert set(blocks[0]["metrics"]) == metrics
    assert api.world.live_status(run["job_id"]) == live  # deterministic for the instant


def test_live_status_shows_where_running_failed_and_cancelled_runs_stand(
    serve: Callable[..., Api],
) -> None:
    api = serve()
    _, running = _live(api, "running")
    assert running["current_block"] is not None
    assert 0 <= running["overall_progress_percentage"] < 100
    assert [b["status"] for b in running["blocks"]].count("running") == 1
    failed_run, failed = _live(api, "failed")
    [broken] = [block for block in failed["blocks"] if block["status"] == "failed"]
    assert broken["error_message"] == failed_run["error_message"]
    assert _live(api, "cancelled")[1]["overall_status"] == "cancelled"
    assert _live(api, "queued")[1]["estimation_blocked_by"] is not None


def test_live_status_of_unknown_run_answers_404(serve: Callable[..., Api]) -> None:
    response = serve().client.get("/workflows/runs/not-a-run/live_status")
    assert (response.status_code, response.json()) == (404, {"detail": "Run not found"})


def test_workflows_list_every_workflow_with_its_last_run_date(serve: Callable[..., Api]) -> None:
    api = serve()
    served = api.client.get("/workflows").json()
    assert len(served) == SMALL.workflows
    assert served == api.world.workflows()
    runs = api.world.runs()
    for workflow in served:
        assert workflow["workflow_definition"] is None
        assert parse(workflow["updated_at"]) <= api.world.now
        newest = max(run["queued_at"] for run in runs if run["workflow_id"] == workflow["id"])
        assert parse(workflow["last_run_date"]) == newest


# -- the generated history ------------------------------------------------------------------------


def test_same_seed_gives_identical_payloads_and_another_seed_does_not() -> None:
    one, two = World(SMALL), World(SMALL)
    for world in (one, two):
        world.advance(900, new_runs=25)
        world.add_runs(5, status="failed")
    assert one.runs_json(limit=500) == two.runs_json(limit=500)
    assert one.workflows_json() == two.workflows_json()
    other = World(WorldConfig(seed=8, runs=600, workflows=6))
    assert other.runs_json(limit=500) != one.runs_json(limit=500)


def test_timestamps_come_in_every_form_and_parse_to_the_canonical_instant() -> None:
    world = World()
    forms: Counter[str] = Counter()
    for canonical in world.runs():
        payload = world.payload(canonical["job_id"])
        for field in TIMESTAMPS:
            text = payload[field]
            if text is None:
                assert canonical[field] is None
                continue
            assert parse(text) == canonical[field], (field, text)
            fraction = re.search(r"T\d\d:\d\d:\d\d(?:\.(\d+))?", text)
            assert fraction is not None
            forms[f"digits:{len(fraction.group(1) or '')}"] += 1
            offset = re.search(r"(Z|[+-]\d\d:\d\d)$", text)
            forms[offset.group(1) if offset else "no offset"] += 1
    assert {"Z", "+00:00", "+02:00", "-05:30", "no offset"} <= set(forms)
    assert {"digits:0", "digits:3", "digits:6"} <= set(forms)
    assert 0.005 < forms["no offset"] / forms["Z"] < 0.1  # occasional: about 1 in 50 overall


def test_payload_is_the_canonical_record_served(serve: Callable[..., Api]) -> None:
    api = serve()
    served = {run["job_id"]: run for run in api.runs(limit=500).json()}
    for canonical in api.world.runs()[:500]:
        payload = served[canonical["job_id"]]
        assert payload == api.world.payload(canonical["job_id"])
        assert list(payload) == list(canonical)
        for field, value in payload.items():
            expected = canonical[field]
            assert (parse(value) if field in TIMESTAMPS and value else value) == expected


def test_run_fields_follow_the_status() -> None:
    world = World()
    runs = world.runs()
    for run in runs:
        if run["status"] == "queued":
            assert run["metrics"] is None and run["started_at"] is None
            continue
        assert isinstance(run["metrics"]["costs"], dict)
        if run["status"] in TERMINAL and run["started_at"] is not None:
            elapsed = run["completed_at"] - run["started_at"]
            assert run["duration_ms"] == elapsed // timedelta(milliseconds=1)
        if run["status"] == "failed":
            assert run["error_message"] and run["status_reason"]
        start = run["started_at"] or run["queued_at"]
        assert run["created_at"] <= run["queued_at"] <= start <= run["updated_at"] <= world.now
        if run["status"] in TERMINAL:
            assert run["completed_at"] == run["updated_at"]
    usual = {"row_count", "rows_in", "rows_out", "costs", "credits_used"}
    metrics = [run["metrics"] for run in runs if run["metrics"] is not None]
    assert any(set(m) - usual for m in metrics), "some runs carry an extra metrics key"
    assert any(m["row_count"] == "unknown" for m in metrics)
    with_blocks = [run for run in runs if run["blocks"] is not None]
    assert 0.005 < len(with_blocks) / len(runs) < 0.05
    assert all(len(run["blocks"]) == run["blocks_count"] for run in with_blocks)


def test_newest_runs_are_in_flight_and_the_rest_mostly_completed() -> None:
    world = World()
    runs = world.runs()
    in_flight = world.in_flight()
    assert len(in_flight) == round(2000 * 0.03)
    assert set(in_flight) == set(ids(runs[: len(in_flight)]))
    shares = Counter(run["status"] for run in runs[len(in_flight) :])
    assert 0.77 < shares["completed"] / sum(shares.values()) < 0.87
    assert shares["failed"] > shares["cancelled"] > 0


# -- moving the world -------------------------------------------------------------------------


def test_advance_moves_runs_queued_then_running_then_terminal() -> None:
    world = World(SMALL)
    job_ids = world.add_runs(20, status="queued")
    seen: dict[str, list[str]] = {job_id: ["queued"] for job_id in job_ids}
    updated = {job_id: world.payload(job_id)["updated_at"] for job_id in job_ids}
    # Steps of 5 s: shorter than any run time (at least 5 s), so no transition is skipped.
    for _ in range(3000):
        if not set(job_ids) & set(world.in_flight()):
            break
        world.advance(5)
        for job_id in job_ids:
            payload = world.payload(job_id)
            if payload["status"] != seen[job_id][-1]:
                seen[job_id].append(payload["status"])
                assert parse(payload["updated_at"]) > parse(updated[job_id])
                updated[job_id] = payload["updated_at"]
                if payload["status"] == "running":
                    assert parse(payload["updated_at"]) == parse(payload["started_at"])
                else:
                    assert parse(payload["completed_at"]) == parse(payload["updated_at"])
    paths = [tuple(path) for path in seen.values()]
    assert all(path[-1] in TERMINAL for path in paths)
    assert ("queued", "running", "completed") in paths
    allowed = {("queued", "running", end) for end in TERMINAL} | {("queued", "cancelled")}
    assert set(paths) <= allowed
    assert not set(job_ids) & set(world.in_flight())


def test_advance_queues_new_runs_inside_the_interval(serve: Callable[..., Api]) -> None:
    api = serve()
    before = api.world.now
    new = api.world.advance(600, new_runs=30)
    assert api.world.now == before + timedelta(seconds=600)
    records = {run["job_id"]: run for run in api.world.runs()}
    assert all(before <= records[job_id]["queued_at"] <= api.world.now for job_id in new)
    assert set(new) <= set(ids(api.runs(limit=100).json()))
    workflow_id = api.world.workflows()[0]["id"]
    mine = api.world.advance(60, new_runs=3, workflow_id=workflow_id)
    assert {api.world.payload(job_id)["workflow_id"] for job_id in mine} == {workflow_id}


def test_add_runs_creates_runs_in_that_status_and_window() -> None:
    world = World(SMALL)
    start, end = world.now - timedelta(days=40), world.now - timedelta(days=39)
    job_ids = world.add_runs(10, status="failed", queued_between=(start, end))
    records = {run["job_id"]: run for run in world.runs()}
    for job_id in job_ids:
        run = records[job_id]
        assert run["status"] == "failed"
        assert start <= run["queued_at"] <= end
        assert run["updated_at"] == run["completed_at"] <= world.now
    for job_id in world.add_runs(3):  # by default queued within the last hour
        assert world.now - parse(world.payload(job_id)["queued_at"]) <= timedelta(hours=1)


def test_set_status_moves_a_run_between_filters_with_its_timestamps(
    serve: Callable[..., Api],
) -> None:
    api = serve()
    job_id = api.runs(status="completed", limit=1).json()[0]["job_id"]
    api.world.set_status(job_id, "running")
    payload = api.world.payload(job_id)
    assert payload["status"] == "running"
    assert payload["completed_at"] is None and payload["duration_ms"] is None
    assert parse(payload["updated_at"]) <= api.world.now
    assert job_id in ids(api.runs(status="running", limit=500).json())
    assert job_id not in ids(api.runs(status="completed", limit=500).json())
    at = api.world.now + timedelta(seconds=90)
    api.world.set_status(job_id, "failed", at=at)
    payload = api.world.payload(job_id)
    assert payload["error_message"] and parse(payload["completed_at"]) <= at
    assert job_id in ids(api.runs(status="failed", limit=500).json())


def test_set_extra_field_adds_an_unknown_field_and_touch_moves_updated_at() -> None:
    world = World(SMALL)
    first, second = ids(world.runs()[100:102])
    before = world.payload(first)
    world.set_extra_field("priority", "high", job_ids=[first])
    assert world.payload(first) == {**before, "priority": "high"}
    assert "priority" not in world.payload(second)
    world.advance(60)
    world.set_extra_field("priority", "low", job_ids=[second], touch=True)
    assert parse(world.payload(second)["updated_at"]) > world.now - timedelta(seconds=1)
    world.set_extra_field("region", "eu")
    assert all(run["region"] == "eu" for run in world.runs())


def test_listing_stays_in_order_through_many_changes() -> None:
    world = World(WorldConfig(runs=3000, workflows=4, in_flight_share=0.2))
    world.runs_json(status="completed", limit=500)  # build the indexes, then change them
    world.advance(300, new_runs=200)
    for job_id in ids(world.runs()[::37]):
        world.set_status(job_id, "cancelled")
    world.add_runs(120, status="running", queued_between=(world.now - timedelta(days=9), world.now))
    world.advance(5)
    runs = world.runs()
    selections = {
        "completed": {"completed"},
        "cancelled": {"cancelled"},
        "running": {"running"},
        "active": {"queued", "running"},
        None: {"queued", "running", *TERMINAL},
    }
    for status, statuses in selections.items():
        expected = [run for run in runs if run["status"] in statuses]
        served = orjson.loads(world.runs_json(status=status, limit=500))
        assert ids(served) == ids(expected[:500]), status


def test_clock_speed_moves_the_world_with_real_time(serve: Callable[..., Api]) -> None:
    api = serve(clock_speed=3600.0)
    api.runs(limit=1)
    before = api.world.now
    time.sleep(0.05)
    api.runs(limit=1)
    assert api.world.now - before >= timedelta(seconds=0.05 * 3600)


def test_connections_are_kept_alive_between_requests(serve: Callable[..., Api]) -> None:
    api = serve()
    host, port = api.server.base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    for _ in range(3):
        connection.request("GET", "/workflows/runs?limit=5", headers={"x-api-key": KEY})
        response = connection.getresponse()
        assert response.status == 200 and len(orjson.loads(response.read())) == 5
        assert response.getheader("Content-Length")
    connection.close()


def test_request_stats_count_every_request_and_reset(serve: Callable[..., Api]) -> None:
    api = serve()
    api.server.faults.add(Fault(drop_connection=True, path="/workflows"))
    with pytest.raises(httpx.RemoteProtocolError):
        api.client.get("/workflows")
    api.runs(limit=2)
    api.client.get("/workflows", headers={"x-api-key": "wrong"})
    assert api.server.requests == [
        ("GET", "/workflows", {}, 0),
        ("GET", "/workflows/runs", {"limit": "2"}, 200),
        ("GET", "/workflows", {}, 401),
    ]
    assert api.server.request_count == 3
    api.server.reset_stats()
    assert (api.server.request_count, api.server.requests) == (0, [])


# -- faults ------------------------------------------------------------------------------------


def test_status_fault_answers_its_status_for_its_times_then_the_real_answer(
    serve: Callable[..., Api],
) -> None:
    api = serve()
    api.server.faults.add(Fault(status=503, times=2, retry_after=2))
    first, second, third = api.runs(), api.runs(), api.runs()
    assert (first.status_code, second.status_code, third.status_code) == (503, 503, 200)
    assert first.headers["Retry-After"] == "2"
    assert first.headers["Content-Type"].startswith("text/html")
    api.server.faults.add(Fault(status=402))
    assert api.runs().json() == {"error": "insufficient_credits", "message": "Insufficient credits"}
    assert len(api.server.faults) == 0


def test_delay_fault_slows_the_answer_past_a_client_timeout(serve: Callable[..., Api]) -> None:
    api = serve()
    api.server.faults.add(Fault(delay=0.3))
    started = time.perf_counter()
    assert api.runs(limit=1).status_code == 200
    assert time.perf_counter() - started >= 0.3
    api.server.faults.add(Fault(delay=0.5))
    with pytest.raises(httpx.ReadTimeout):
        api.client.get("/workflows/runs", timeout=0.1)


def test_body_and_transform_faults_answer_200_with_their_body(serve: Callable[..., Api]) -> None:
    api = serve()
    api.server.faults.add(Fault(body=b"[]"))
    api.server.faults.add(Fault(transform=lambda body: body.replace(b'"job_id"', b'"jobId"')))
    assert api.runs().json() == []
    transformed = api.runs(limit=3)
    assert transformed.status_code == 200
    assert all("jobId" in run and "job_id" not in run for run in transformed.json())


def test_faults_apply_first_in_first_out_to_matching_requests_only(
    serve: Callable[..., Api],
) -> None:
    api = serve()
    api.server.faults.add(Fault(status=500, query={"status": "active"}))
    api.server.faults.add(Fault(status=502, path="/workflows/runs"))
    api.server.faults.add(Fault(status=504, path="/workflows/runs"))
    assert api.client.get("/workflows").status_code == 200
    assert api.runs().status_code == 502
    assert api.runs(status="active").status_code == 500
    assert api.runs(status="active").status_code == 504
    api.server.faults.add(Fault(status=500, times=5))
    api.server.faults.clear()
    assert api.runs().status_code == 200


def test_ready_made_faults_break_the_body_the_way_they_say(serve: Callable[..., Api]) -> None:
    api = serve()
    faults = api.server.faults
    faults.add(Fault.html_page())
    page = api.runs()
    assert page.status_code == 200 and page.text.lstrip().startswith("<!DOCTYPE html>")
    faults.add(Fault.truncated_json())
    with pytest.raises(ValueError):
        api.runs().json()
    faults.add(Fault.object_instead_of_list())
    wrapped = api.runs(limit=2).json()
    assert isinstance(wrapped, dict) and len(wrapped["data"]) == 2
    faults.add(Fault.run_without_job_id())
    first, second = api.runs(limit=2).json()
    assert "job_id" not in first and "job_id" in second
    faults.add(Fault.bad_timestamp(field="completed_at"))
    broken = api.runs(status="completed", limit=1).json()[0]["completed_at"]
    with pytest.raises(ValueError):
        parse(broken)


def test_ready_made_faults_take_times_path_and_query(serve: Callable[..., Api]) -> None:
    api = serve()
    fault = Fault.truncated_json(times=2, path="/workflows/runs", query={"limit": "7"})
    api.server.faults.add(fault)
    assert api.client.get("/workflows").status_code == 200
    assert len(api.runs(limit=8).json()) == 8
    for _ in range(2):
        with pytest.raises(ValueError):
            api.runs(limit=7).json()
    assert len(api.runs(limit=7).json()) == 7


def test_rate_limit_exhausted_fault_answers_429_without_spending_budget(
    serve: Callable[..., Api],
) -> None:
    api = serve(rate_limit_per_minute=10)
    api.server.faults.add(Fault.rate_limit_exhausted(retry_after=0.5))
    refused = api.runs()
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "0.5"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert api.runs().headers["X-RateLimit-Remaining"] == "9"
