"""The API emulator in its own process, so its CPU is not counted against the sync's.

Started by run.py as `python bench/emulator_proc.py --workflows N --runs N ...`. Once it
listens it prints one JSON line on stdout (base_url, build seconds, how many runs, workflows,
runs in flight); then it answers commands read from stdin, one JSON line each:

- `count`: requests received so far (errors, 429s and retries included);
- `window`: request count, 429s, and the most requests that arrived in any 60 s window;
- `quit` (or end of input): stop serving and exit.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

from pipelines.emulator import EmulatorServer, World, WorldConfig
from pipelines.emulator.faults import Reply


class TimedEmulator(EmulatorServer):
    """The project's emulator, also noting when each request arrived."""

    def __init__(self, world: World, **options: Any) -> None:
        super().__init__(world, **options)
        self.arrivals: list[float] = []
        self._arrivals_lock = threading.Lock()

    def handle(self, method: str, target: str, api_key: str | None) -> Reply | None:
        """Answer as the emulator does, after noting the arrival time."""
        with self._arrivals_lock:
            self.arrivals.append(time.monotonic())
        return super().handle(method, target, api_key)


def busiest_window(arrivals: list[float], seconds: float = 60.0) -> int:
    """The most arrivals inside any window of `seconds`."""
    ordered = sorted(arrivals)
    best, start = 0, 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= seconds:
            start += 1
        best = max(best, end - start + 1)
    return best


def warm(world: World) -> None:
    """Serialise every run once, as a long-running API would have its pages ready."""
    for workflow in world.workflows():
        world.runs_json(workflow_id=workflow["id"], limit=world.config.runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workflows", type=int, required=True)
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--in-flight-share", type=float, default=WorldConfig.in_flight_share)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--api-key", default="bench-key")
    parser.add_argument("--rate-limit", type=int, default=0, help="per minute; 0: none")
    args = parser.parse_args()

    started = time.perf_counter()
    world = World(
        WorldConfig(
            seed=args.seed,
            workflows=args.workflows,
            runs=args.runs,
            in_flight_share=args.in_flight_share,
        )
    )
    built = time.perf_counter() - started
    warm(world)
    warmed = time.perf_counter() - started - built
    server = TimedEmulator(
        world, api_key=args.api_key, rate_limit_per_minute=args.rate_limit or None
    )
    server.start()
    hello = {
        "base_url": server.base_url,
        "build_seconds": round(built, 2),
        "warm_seconds": round(warmed, 2),
        "runs": args.runs,
        "workflows": args.workflows,
        "in_flight": len(world.in_flight()),
    }
    print(json.dumps(hello), flush=True)
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "count":
                print(json.dumps({"count": server.request_count}), flush=True)
            elif command == "window":
                statuses = [status for *_, status in list(server.requests)]
                answer = {
                    "count": len(statuses),
                    "refused_429": statuses.count(429),
                    "busiest_60s": busiest_window(list(server.arrivals)),
                }
                print(json.dumps(answer), flush=True)
            elif command == "quit":
                break
    finally:
        server.stop()


if __name__ == "__main__":
    main()
