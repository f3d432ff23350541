"""The emulator over real HTTP: the Sixtyfour endpoints with auth, rate limits and faults."""

from __future__ import annotations

import math
import socketserver
import threading
import time
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from .faults import Fault, FaultQueue, Reply, error_reply
from .ratelimit import SlidingWindow
from .routes import route
from .world import World, WorldConfig

Request = tuple[str, str, dict[str, str], int]


class EmulatorServer:
    """Serves a World on loopback in a daemon thread; usable as a context manager.

    Options are plain attributes, read on every request, so a test may change them while
    the server runs.
    """

    def __init__(
        self,
        world: World,
        api_key: str = "test-key",
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limit_per_minute: int | None = 500,
        send_retry_after: bool = True,
        extra_status_filters: bool = True,
        clock_speed: float | None = None,
    ) -> None:
        self.world = world
        self.api_key = api_key
        self.host = host
        self.port = port
        self.rate_limit_per_minute = rate_limit_per_minute  # None lifts the limit
        self.send_retry_after = send_retry_after
        self.extra_status_filters = extra_status_filters  # accept status=failed / queued
        self.clock_speed = clock_speed  # world seconds per real second, or a still clock
        self.faults = FaultQueue()
        self.requests: list[Request] = []  # (method, path, query, status; 0 = dropped)
        self._stats_lock = threading.Lock()
        self._window = SlidingWindow()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._clock_lock = threading.Lock()
        self._clock_mark = time.monotonic()
        self._arrivals = 0.0

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> EmulatorServer:
        """Start serving in a daemon thread (no-op if already serving); returns self."""
        if self._httpd is None:
            self._httpd = _HTTPServer((self.host, self.port), self)
            self._clock_mark = time.monotonic()
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="sixtyfour-emulator",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port; requests still sleeping in a delay are abandoned."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """Where the server listens, e.g. http://127.0.0.1:54321."""
        if self._httpd is None:
            raise RuntimeError("the emulator is not serving; call start() first")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- stats --------------------------------------------------------------------------------

    @property
    def request_count(self) -> int:
        """Requests received, errors, faults and dropped connections included."""
        return len(self.requests)

    def reset_stats(self) -> None:
        """Forget the requests seen so far."""
        with self._stats_lock:
            self.requests = []

    # -- answering ----------------------------------------------------------------------------

    def handle(self, method: str, target: str, api_key: str | None) -> Reply | None:
        """Answer one request; None means: close the connection without answering."""
        parts = urlsplit(target)
        path = unquote(parts.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        self._follow_clock()
        fault = self.faults.take(path, query)
        if fault is None:
            reply: Reply | None = self._answer(method, path, query, api_key or "")
        else:
            reply = self._inject(fault, method, path, query, api_key or "")
        with self._stats_lock:
            self.requests.append((method, path, query, 0 if reply is None else reply.status))
        return reply

    def _inject(
        self, fault: Fault, method: str, path: str, query: dict[str, str], key: str
    ) -> Reply | None:
        if fault.delay:
            time.sleep(fault.delay)
        if fault.drop_connection:
            return None
        reply = fault.canned_reply()
        if reply is None:
            reply = self._answer(method, path, query, key)
            if fault.transform is not None:
                reply.body = fault.transform(reply.body)
        elif self.rate_limit_per_minute is not None:
            # A canned answer comes from in front of the API and spends no budget.
            spent = reply.status == 429
            remaining = 0 if spent else self._window.remaining(key, self.rate_limit_per_minute)
            reply.headers.update(self._rate_headers(remaining))
        if fault.retry_after is not None:
            # Integral values go out as HTTP's integer seconds; fractions keep tests fast.
            seconds = float(fault.retry_after)
            reply.headers["Retry-After"] = str(int(seconds) if seconds.is_integer() else seconds)
        return reply

    def _answer(self, method: str, path: str, query: dict[str, str], key: str) -> Reply:
        limit = self.rate_limit_per_minute
        if key != self.api_key:
            reply = error_reply(401)
            if limit is not None:
                reply.headers.update(self._rate_headers(self._window.remaining(key, limit)))
            return reply
        if limit is None:
            return route(self.world, method, path, query, self.extra_status_filters)
        remaining, wait = self._window.hit(key, limit)
        if wait > 0:
            reply = error_reply(429)
            if self.send_retry_after:
                reply.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        else:
            reply = route(self.world, method, path, query, self.extra_status_filters)
        reply.headers.update(self._rate_headers(remaining))
        return reply

    def _rate_headers(self, remaining: int) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.rate_limit_per_minute),
            "X-RateLimit-Remaining": str(remaining),
        }

    def _follow_clock(self) -> None:
        if self.clock_speed is None:
            return
        config = self.world.config
        per_second = config.runs / (config.span_days * 86_400) if config.span_days > 0 else 0.0
        with self._clock_lock:
            now = time.monotonic()
            seconds = (now - self._clock_mark) * self.clock_speed
            self._clock_mark = now
            # New runs keep arriving at the history's average pace.
            self._arrivals += seconds * per_second
            arrivals = int(self._arrivals)
            self._arrivals -= arrivals
            self.world.advance(seconds, new_runs=arrivals)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for a request sleeping in a delay fault

    def __init__(self, address: tuple[str, int], emulator: EmulatorServer) -> None:
        self.emulator = emulator
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can stall without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so clients can pool connections
    server_version = "sixtyfour-emulator"
    disable_nagle_algorithm = True  # headers and body go out as two writes
    timeout = 60  # idle keep-alive connections are closed after this

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header: the world's clock, as a real server's is that of its timestamps."""
        world = cast(_HTTPServer, self.server).emulator.world
        return format_datetime(world.now, usegmt=True)

    def version_string(self) -> str:
        """The Server header: the emulator's name, without Python's version."""
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: request lines on stderr would drown test and benchmark output."""

    def do_GET(self) -> None:
        """Answer any method; the router refuses all but GET."""
        emulator = cast(_HTTPServer, self.server).emulator
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)  # keep the connection in step for the next request
        reply = emulator.handle(self.command, self.path, self.headers.get("x-api-key"))
        if reply is None:
            self.close_connection = True
            return
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up, e.g. timed out on a delay

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET


def serve_forever(
    config: WorldConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 8064,
    api_key: str = "test-key",
    rate_limit_per_minute: int | None = 500,
    clock_speed: float | None = None,
) -> None:
    """Build a world, serve it, print where, and block until Ctrl-C.

    Args:
        config: the world to build (default WorldConfig()).
        host: interface to listen on.
        port: TCP port (0 picks a free one).
        api_key: the key clients must send in x-api-key.
        rate_limit_per_minute: request budget per key; None lifts it.
        clock_speed: world seconds per real second (runs progress and arrive); None freezes.
    """
    world = World(config)
    server = EmulatorServer(
        world,
        api_key=api_key,
        host=host,
        port=port,
        rate_limit_per_minute=rate_limit_per_minute,
        clock_speed=clock_speed,
    )
    with server:
        print(
            f"Sixtyfour emulator: {world.config.runs} runs in {world.config.workflows} workflows "
            f"at {server.base_url} (x-api-key: {api_key}); Ctrl-C to stop",
            flush=True,
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
