"""What each endpoint answers: routing, query checks and error bodies as FastAPI words them."""

from __future__ import annotations

import re
from typing import Any

import orjson

from .faults import Reply, error_reply
from .world import UnknownWorkflow, World

_LIVE_STATUS = re.compile(r"/workflows/runs/([^/]+)/live_status")
_INTEGER = re.compile(r"\s*[+-]?\d+\s*")
# The filters the API reference documents; whether failed and queued work too is unknown.
_DOCUMENTED_FILTERS = ("running", "completed", "cancelled", "active")
_EXTRA_FILTERS = ("failed", "queued")


def route(
    world: World, method: str, path: str, query: dict[str, str], extra_status_filters: bool
) -> Reply:
    """Answer an authorised request the way the real API does.

    Args:
        world: what to serve.
        method: the HTTP method; only GET is served.
        path: the decoded request path.
        query: the query parameters (the last value of each).
        extra_status_filters: whether status=failed and status=queued are accepted.
    """
    live = _LIVE_STATUS.fullmatch(path)
    if path not in ("/workflows", "/workflows/runs") and live is None:
        return error_reply(404)
    if method != "GET":
        reply = error_reply(405, "Method Not Allowed")
        reply.headers["Allow"] = "GET"
        return reply
    if path == "/workflows":
        return Reply(200, world.workflows_json())
    if live is not None:
        try:
            return Reply(200, orjson.dumps(world.live_status(live[1])))
        except KeyError:
            return error_reply(404, "Run not found")
    return _list_runs(world, query, extra_status_filters)


def _list_runs(world: World, query: dict[str, str], extra_status_filters: bool) -> Reply:
    allowed = _DOCUMENTED_FILTERS + (_EXTRA_FILTERS if extra_status_filters else ())
    errors: list[dict[str, Any]] = []
    status = query.get("status")
    if status is not None and status not in allowed:
        errors.append(_enum_error(status, allowed))
    limit = 100
    if "limit" in query:
        limit, error = _parse_limit(query["limit"])
        if error is not None:
            errors.append(error)
    if errors:
        return Reply(422, orjson.dumps({"detail": errors}))
    try:
        return Reply(200, world.runs_json(status, query.get("workflow_id"), limit))
    except UnknownWorkflow:
        return error_reply(404, "Workflow not found")


def _error(
    kind: str, loc: str, msg: str, value: str, ctx: dict[str, Any] | None = None
) -> dict[str, Any]:
    # One validation error the way FastAPI (pydantic v2) words and orders it.
    error: dict[str, Any] = {"type": kind, "loc": ["query", loc], "msg": msg, "input": value}
    if ctx is not None:
        error["ctx"] = ctx
    return error


def _enum_error(value: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    expected = ", ".join(f"'{v}'" for v in allowed[:-1]) + f" or '{allowed[-1]}'"
    return _error("enum", "status", f"Input should be {expected}", value, {"expected": expected})


def _parse_limit(raw: str) -> tuple[int, dict[str, Any] | None]:
    if not _INTEGER.fullmatch(raw):
        msg = "Input should be a valid integer, unable to parse string as an integer"
        return 0, _error("int_parsing", "limit", msg, raw)
    value = int(raw)
    if value < 1:
        msg = "Input should be greater than or equal to 1"
        return 0, _error("greater_than_equal", "limit", msg, raw, {"ge": 1})
    if value > 500:
        msg = "Input should be less than or equal to 500"
        return 0, _error("less_than_equal", "limit", msg, raw, {"le": 500})
    return value, None
