"""Faults the emulator can be told to inject: errors, slow or dropped answers, broken bodies.

A test arms them at run time (`server.faults.add(Fault(...))`); each request takes the first
armed fault that matches it, first in first out, until the fault has been used `times` times.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypedDict, Unpack

import orjson

JSON = "application/json"
HTML = "text/html; charset=utf-8"

# Error bodies as the real service (FastAPI behind a proxy) would send them: mostly
# {"detail": ...}, the {"error", "message"} shape some endpoints use, Starlette's plain-text
# 500, and proxy HTML pages for gateway errors.
_JSON_ERRORS: dict[int, Any] = {
    400: {"detail": "Bad request"},
    401: {"detail": "Invalid API key"},
    402: {"error": "insufficient_credits", "message": "Insufficient credits"},
    403: {"detail": "Access denied"},
    404: {"detail": "Not Found"},
    409: {"error": "conflict", "message": "A conflicting request is in progress"},
    422: {"detail": [{"type": "missing", "loc": ["query"], "msg": "Field required"}]},
    429: {"detail": "Rate limit exceeded"},
}
_PROXY_PAGE = (
    "<html><head><title>{code} {phrase}</title></head><body><center><h1>{code} {phrase}</h1>"
    "</center><hr><center>nginx</center></body></html>"
)
_MAINTENANCE_PAGE = (
    b"<!DOCTYPE html><html><head><title>Sixtyfour - Scheduled maintenance</title></head>"
    b"<body><h1>We'll be right back</h1><p>Sixtyfour is undergoing maintenance.</p></body></html>"
)
UNPARSEABLE_TIMESTAMP = "2026-13-45T99:99:99Z"
# What `lone_surrogate` serves as the field's JSON value, and how a reader that keeps the
# text reads it.
LONE_SURROGATE_JSON = b'"cut short \\ud83d here"'
LONE_SURROGATE_READ = "cut short \ufffd here"


@dataclass
class Reply:
    """An HTTP answer: status, body and headers beyond Content-Type and Content-Length."""

    status: int
    body: bytes
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


def error_reply(status: int, detail: Any = None) -> Reply:
    """The error answer for `status`: `{"detail": detail}` if given, else the usual body."""
    if detail is not None:
        return Reply(status, orjson.dumps({"detail": detail}))
    if status in _JSON_ERRORS:
        return Reply(status, orjson.dumps(_JSON_ERRORS[status]))
    phrase = HTTPStatus(status).phrase
    if status == 500:
        return Reply(status, b"Internal Server Error", "text/plain; charset=utf-8")
    if status in (502, 503, 504):
        return Reply(status, _PROXY_PAGE.format(code=status, phrase=phrase).encode(), HTML)
    return Reply(status, orjson.dumps({"detail": phrase}))


class FaultScope(TypedDict, total=False):
    """Which requests a fault applies to, and how often (the Fault fields of the same names)."""

    times: int
    path: str | None
    query: dict[str, str] | None


@dataclass
class Fault:
    """One injected misbehaviour; see the module docstring for how faults are matched."""

    status: int | None = None  # answer this status with its usual error body
    retry_after: float | None = None  # send a Retry-After header (seconds)
    delay: float = 0  # sleep this long before answering (slow answers, client timeouts)
    drop_connection: bool = False  # close the socket without answering
    body: bytes | None = None  # answer 200 with this raw body
    transform: Callable[[bytes], bytes] | None = None  # pass the real body through this
    times: int = 1
    path: str | None = None  # only requests whose path starts with this
    query: dict[str, str] | None = None  # only requests whose query has these items

    def matches(self, path: str, query: dict[str, str]) -> bool:
        """Whether this fault applies to a request."""
        if self.path is not None and not path.startswith(self.path):
            return False
        return all(query.get(key) == value for key, value in (self.query or {}).items())

    def canned_reply(self) -> Reply | None:
        """The answer this fault sends instead of the real one, if it replaces it."""
        if self.status is not None:
            return error_reply(self.status)
        if self.body is not None:
            content_type = HTML if self.body.lstrip()[:1] == b"<" else JSON
            return Reply(200, self.body, content_type)
        return None

    @classmethod
    def html_page(cls, **scope: Unpack[FaultScope]) -> Fault:
        """A 200 answer carrying an HTML maintenance page instead of JSON."""
        return cls(body=_MAINTENANCE_PAGE, **scope)

    @classmethod
    def truncated_json(cls, **scope: Unpack[FaultScope]) -> Fault:
        """The real body cut in half: a complete HTTP answer with JSON that does not parse."""
        return cls(transform=lambda body: body[: max(1, len(body) // 2)], **scope)

    @classmethod
    def object_instead_of_list(cls, **scope: Unpack[FaultScope]) -> Fault:
        """The real list wrapped in an object: `{"data": [...]}`."""
        return cls(transform=lambda body: b'{"data":' + body + b"}", **scope)

    @classmethod
    def run_without_job_id(cls, **scope: Unpack[FaultScope]) -> Fault:
        """The first run of a runs list served without its job_id."""
        scope.setdefault("path", "/workflows/runs")
        return cls(transform=_edit_items(lambda run: run.pop("job_id", None)), **scope)

    @classmethod
    def bad_timestamp(cls, field: str = "updated_at", **scope: Unpack[FaultScope]) -> Fault:
        """The first run of a runs list served with an unparseable string in `field`."""
        scope.setdefault("path", "/workflows/runs")
        edit = _edit_items(lambda run: run.__setitem__(field, UNPARSEABLE_TIMESTAMP))
        return cls(transform=edit, **scope)

    @classmethod
    def lone_surrogate(cls, field: str = "error_message", **scope: Unpack[FaultScope]) -> Fault:
        """Every run of a runs list served with a lone UTF-16 surrogate escape (`\\ud83d`)
        in `field`: JSON's grammar allows it, yet it names no character (a service that cut
        a string between the two halves of a pair sends one)."""
        scope.setdefault("path", "/workflows/runs")
        marker = "lone-surrogate-here"
        edit = _edit_items(lambda run: run.__setitem__(field, marker), every=True)

        def transform(body: bytes) -> bytes:
            return edit(body).replace(orjson.dumps(marker), LONE_SURROGATE_JSON)

        return cls(transform=transform, **scope)

    @classmethod
    def rate_limit_exhausted(
        cls, retry_after: float | None = 1.0, **scope: Unpack[FaultScope]
    ) -> Fault:
        """A 429 as if the budget were spent, with Retry-After unless it is None."""
        return cls(status=429, retry_after=retry_after, **scope)


def _edit_items(
    edit: Callable[[dict[str, Any]], object], every: bool = False
) -> Callable[[bytes], bytes]:
    """A transform applying `edit` to the first object of a JSON list body (others untouched),
    or to `every` object of it."""

    def transform(body: bytes) -> bytes:
        try:
            items = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        if not (isinstance(items, list) and items and isinstance(items[0], dict)):
            return body
        for item in items if every else items[:1]:
            if isinstance(item, dict):
                edit(item)
        return orjson.dumps(items)

    return transform


@dataclass
class _Armed:
    fault: Fault
    uses_left: int


class FaultQueue:
    """Armed faults, first in first out; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[_Armed] = []

    def add(self, fault: Fault) -> Fault:
        """Arm a fault behind those already armed; returns it."""
        if fault.times < 1:
            raise ValueError("a fault must apply to at least one request")
        with self._lock:
            self._armed.append(_Armed(fault, fault.times))
        return fault

    def clear(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._armed.clear()

    def take(self, path: str, query: dict[str, str]) -> Fault | None:
        """The first armed fault matching a request, using it up once."""
        with self._lock:
            for position, armed in enumerate(self._armed):
                if armed.fault.matches(path, query):
                    armed.uses_left -= 1
                    if armed.uses_left == 0:
                        del self._armed[position]
                    return armed.fault
        return None

    def __len__(self) -> int:
        """How many faults are still armed."""
        with self._lock:
            return len(self._armed)
