"""One HTTP client for the Sixtyfour API: auth, timeouts, pacing, retries, typed errors."""

from __future__ import annotations

import logging
import random
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from pipelines.sixtyfour import settings, unstorable_text
from pipelines.sixtyfour.errors import (
    ApiResponseError,
    ApiUnavailableError,
    AuthError,
    ConfigError,
)

# httpx imports its command line client (click, rich, pygments: ~40 ms) whenever those are
# installed, and every sync would pay for it at start. The sync never uses it: a None entry
# makes that one import fail the way httpx expects when the CLI's extras are missing.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx  # noqa: E402

log = logging.getLogger("sixtyfour_sync.client")

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass
class RequestStats:
    """What the client sent: every HTTP request counts, retries included."""

    api_requests: int = 0
    http_retries: int = 0
    rate_limited: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, *, retry: bool = False, rate_limited: bool = False) -> None:
        with self._lock:
            self.api_requests += 1
            self.http_retries += retry
            self.rate_limited += rate_limited


class RatePacer:
    """Keeps requests under a per-minute budget over any sliding 60-second window.

    The API allows 500 requests per minute per key and answers 429 past it. A sliding
    window lets a short sync go at full speed while a long backfill settles at the budget,
    so it is never refused for going too fast.
    """

    # A second beyond the API's minute: requests are counted when sent here, on arrival there.
    WINDOW_SECONDS = 61.0

    def __init__(self, per_minute: float | None) -> None:
        self._budget = max(1, int(per_minute)) if per_minute else 0
        self._sent: deque[float] = deque()
        self._not_before = 0.0
        self._lock = threading.Lock()

    def wait_turn(self) -> None:
        if not self._budget:
            return
        while True:
            with self._lock:
                now = time.monotonic()
                while self._sent and now - self._sent[0] >= self.WINDOW_SECONDS:
                    self._sent.popleft()
                if now >= self._not_before and len(self._sent) < self._budget:
                    self._sent.append(now)
                    return
                free_at = self._sent[0] + self.WINDOW_SECONDS if self._sent else now
                if len(self._sent) < self._budget:
                    free_at = now
                wait = max(free_at, self._not_before) - now
            time.sleep(max(wait, 0.001))

    def hold_off(self, seconds: float) -> None:
        """Send nothing for a while, e.g. when the API says the budget is spent."""
        with self._lock:
            self._not_before = max(self._not_before, time.monotonic() + seconds)


class SixtyfourClient:
    """Reads the Sixtyfour API with one pooled httpx client (safe to share between threads)."""

    def __init__(
        self,
        api_key: str,
        base_url: str = settings.DEFAULT_BASE_URL,
        *,
        timeout_seconds: float = settings.DEFAULT_TIMEOUT_SECONDS,
        max_retries: int = settings.DEFAULT_MAX_RETRIES,
        max_retry_wait_seconds: float = settings.DEFAULT_MAX_RETRY_WAIT_SECONDS,
        rate_limit_per_minute: float | None = settings.DEFAULT_RATE_LIMIT_PER_MINUTE,
        concurrency: int = settings.DEFAULT_CONCURRENCY,
    ) -> None:
        if not api_key or not api_key.strip():
            raise ConfigError(
                "no API key: set SOURCES__SIXTYFOUR__API_KEY or api_key in .dlt/secrets.toml"
            )
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got {base_url!r}")
        self.stats = RequestStats()
        # The API's clock at its first answer (its Date header), None until then or when it
        # sends none: the sync compares the cursor with the API's timestamps, not with ours.
        self.first_answer_at: datetime | None = None
        self.base_url = base_url.rstrip("/")
        self._max_retries = max_retries
        self._max_retry_wait = max_retry_wait_seconds
        self._pacer = RatePacer(rate_limit_per_minute)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"x-api-key": api_key.strip(), "accept": "application/json"},
            timeout=httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 10.0)),
            limits=httpx.Limits(max_connections=max(concurrency, 1) + 1),
            # Plain HTTP (the emulator on loopback) has no TLS to verify; skipping the CA
            # bundle saves a noticeable share of a no-change sync's start.
            verify=self.base_url.startswith("https://"),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SixtyfourClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def list_runs(
        self, *, status: str | None = None, workflow_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Newest runs of one filter (at most PAGE_LIMIT), newest queued first."""
        return self.fetch_runs(status=status, workflow_id=workflow_id).parse()

    def fetch_runs(self, *, status: str | None = None, workflow_id: str | None = None) -> RunsBody:
        """`list_runs`' answer, not parsed yet: the caller parses it where it wants.

        A sync fetches on several threads but parses on the one that consumes the pages:
        parsing holds the interpreter, and fetching threads that parse make the consumer
        wait for it at every turn (about 0.5 s of 2.5 on a 200,000-run backfill).
        """
        params: dict[str, str | int] = {"limit": settings.PAGE_LIMIT}
        if status:
            params["status"] = status
        if workflow_id:
            params["workflow_id"] = workflow_id
        body = self._get(settings.RUNS_PATH, params)
        return RunsBody(body, _describe(settings.RUNS_PATH, params))

    def list_workflows(self) -> list[dict[str, Any]]:
        """Every workflow of the organization (the endpoint has no pagination)."""
        body = self._get(settings.WORKFLOWS_PATH, {})
        return _parse_list(body, settings.WORKFLOWS_PATH)

    def live_status(self, run_id: str) -> dict[str, Any] | None:
        """One run's live state with block detail; None when the API does not know the run."""
        path = settings.LIVE_STATUS_PATH.format(run_id=run_id)
        try:
            body = self._get(path, {})
        except NotFoundError:
            return None
        parsed = _parse_json(body, path)
        if not isinstance(parsed, dict):
            raise ApiResponseError(f"GET {path} answered 200 with {_kind(parsed)}, not an object")
        return parsed

    def _get(self, path: str, params: dict[str, str | int]) -> bytes:
        attempt = 0
        while True:
            self._pacer.wait_turn()
            retry_wait: float | None = None
            try:
                response, body = self._send(path, params)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                self.stats.count(retry=attempt > 0)
                failure = f"{type(exc).__name__} on GET {_describe(path, params)}"
            else:
                self.stats.count(retry=attempt > 0, rate_limited=response.status_code == 429)
                self._note_budget(response)
                if self.first_answer_at is None:
                    self.first_answer_at = _server_time(response)
                if response.status_code == 200:
                    return body
                failure = _check_status(response, path, params)
                retry_wait = _retry_after(response)
            attempt += 1
            if attempt > self._max_retries:
                raise ApiUnavailableError(
                    f"the Sixtyfour API kept failing ({failure}) after {self._max_retries} "
                    "retries: check its status and run the sync again later"
                )
            wait = self._backoff(attempt, retry_wait)
            log.info("%s; retry %d/%d in %.1fs", failure, attempt, self._max_retries, wait)
            time.sleep(wait)

    def _send(self, path: str, params: dict[str, str | int]) -> tuple[httpx.Response, bytes]:
        """One GET: the response, and the body of a 200 kept apart from it.

        httpx holds a response in a reference cycle (with its stream), so a body stored on it
        lives until the cyclic collector runs, which a sync makes rare: read into bytes of
        our own, a page is freed as soon as it is parsed. Other answers keep their body on
        the response, for the error message.
        """
        with self._http.stream("GET", path, params=params) as response:
            if response.status_code != 200:
                response.read()
                return response, b""
            return response, b"".join(response.iter_bytes())

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            wait = min(retry_after, self._max_retry_wait)
            self._pacer.hold_off(wait)
            return wait
        # Full jitter keeps concurrent workers from retrying in lockstep.
        ceiling = min(self._max_retry_wait, 0.5 * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    def _note_budget(self, response: httpx.Response) -> None:
        remaining = response.headers.get("x-ratelimit-remaining")
        limit = response.headers.get("x-ratelimit-limit")
        if remaining is None or limit is None:
            return
        try:
            left, per_minute = int(remaining), int(limit)
        except ValueError:
            return
        # Another client may share the key: when the budget runs low, slow down before a 429.
        if per_minute > 0 and left <= 2:
            self._pacer.hold_off(60.0 / per_minute * (3 - left))


class NotFoundError(ApiResponseError):
    """404 from the API: an unknown run or workflow."""


class ForbiddenError(AuthError):
    """403 on one workflow: the key may not see it (the rest of the sync can go on)."""


class RequestRejectedError(ApiResponseError):
    """400/422 from the API: it refused the request's parameters."""


def _check_status(response: httpx.Response, path: str, params: dict[str, str | int]) -> str:
    """Raise for answers no retry can fix; return a description of retryable ones."""
    code = response.status_code
    where = f"GET {_describe(path, params)}"
    # 403: the key may not see this workflow (or this run of it), not a rejected key.
    if code == 403 and ("workflow_id" in params or path.startswith(settings.RUNS_PATH + "/")):
        raise ForbiddenError(f"{where} answered 403: {_api_message(response)}")
    if code in (401, 403):
        raise AuthError(
            f"the API key was rejected ({code} {_api_message(response)}): set a valid key in "
            "SOURCES__SIXTYFOUR__API_KEY or .dlt/secrets.toml"
        )
    if code == 404:
        if path in (settings.RUNS_PATH, settings.WORKFLOWS_PATH) and "workflow_id" not in params:
            # The lists of all runs and workflows always exist: the address is not the API's.
            raise ApiResponseError(
                f"{where} answered 404: {_api_message(response)}: check that base_url "
                "(SOURCES__SIXTYFOUR__BASE_URL) is the API's address"
            )
        raise NotFoundError(f"{where} answered 404: {_api_message(response)}")
    if code == 402:
        raise ApiResponseError(
            f"{where} answered 402 (insufficient credits): {_api_message(response)}"
        )
    if code in RETRYABLE_STATUSES:
        return f"{code} on {where}"
    if code in (400, 422):
        raise RequestRejectedError(f"{where} was refused ({code}): {_api_message(response)}")
    raise ApiResponseError(
        f"{where} answered {code}: {_api_message(response)}: check the API's status, and "
        "base_url (SOURCES__SIXTYFOUR__BASE_URL)"
    )


def _server_time(response: httpx.Response) -> datetime | None:
    """The time in an answer's Date header; None when it has none that reads as one."""
    value = response.headers.get("date")
    if not value:
        return None
    try:
        sent_at = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return sent_at if sent_at.tzinfo is not None else None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _api_message(response: httpx.Response) -> str:
    """The API's own words, from any of its error body shapes, on one line."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text[:200].replace("\n", " ") or response.reason_phrase
    if isinstance(body, dict):
        detail = body.get("detail", body.get("message", body.get("error")))
        if isinstance(detail, list):
            parts = []
            for item in detail:
                if isinstance(item, dict):
                    loc = ".".join(str(p) for p in item.get("loc", []))
                    parts.append(f"{loc}: {item.get('msg', '')}".strip(": "))
            return "; ".join(parts) or str(detail)
        if detail is not None:
            return str(detail)
    return str(body)[:200]


def _parse_json(body: bytes, where: str) -> Any:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return _read_refused(body, where, exc.msg)
    if not unstorable_text.may_hold_nul(body):
        return parsed
    try:
        parsed, count = unstorable_text.replaced(parsed)
    except ValueError:
        return parsed  # nested deeper than the repair goes: left as read
    _warn_replaced(where, count)
    return parsed


def _read_refused(body: bytes, where: str, refused: str) -> Any:
    """A body orjson refused, taken only when lone surrogates were what it refused."""
    try:
        parsed, count = unstorable_text.read_replacing(body)
    except ValueError:
        count = 0
    if not count:
        start = body[:40].decode("utf-8", "replace").replace("\n", " ")
        raise ApiResponseError(
            f"GET {where} answered 200 with a body that is not JSON ({refused}; "
            f"it starts {start!r})"
        )
    _warn_replaced(where, count)
    return parsed


def _warn_replaced(where: str, count: int) -> None:
    if count:
        log.warning(
            "GET %s answered text holding characters a warehouse cannot store as sent (a NUL, "
            "which PostgreSQL refuses, or a lone UTF-16 surrogate, which is not Unicode): "
            "%d stored as U+FFFD",
            where,
            count,
        )


@dataclass(frozen=True)
class RunsBody:
    """A list answer as it came (JSON bytes), and the request it answered."""

    body: bytes
    where: str

    def parse(self) -> list[dict[str, Any]]:
        """The runs it holds.

        Raises:
            ApiResponseError: the body is not JSON, or not a list of objects.
        """
        return _parse_list(self.body, self.where)


def _parse_list(body: bytes, where: str) -> list[dict[str, Any]]:
    parsed = _parse_json(body, where)
    if not isinstance(parsed, list):
        raise ApiResponseError(f"GET {where} answered 200 with {_kind(parsed)}, not a list")
    for item in parsed:
        if type(item) is not dict:
            raise ApiResponseError(f"GET {where} answered a list holding {_kind(item)}")
    return parsed


def _kind(value: Any) -> str:
    names: dict[type, str] = {dict: "an object", list: "a list", str: "a string"}
    return names.get(type(value), repr(value)[:20])


def _describe(path: str, params: dict[str, str | int]) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{path}?{query}" if query else path
