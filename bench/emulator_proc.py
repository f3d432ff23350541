"""The API emulator in its own process, so its CPU is not counted against the sync's.

Started by run.py as `python bench/emulator_proc.py --workflows N --runs N ...`. Once it
listens it prints one JSON line on stdout (base_url, build seconds, how many runs, workflows,
runs in flight); then it answers commands read from stdin, one JSON line each:

- `count`: requests received so far (errors, 429s and retries included);
- `window [BUDGET]`: request count, 429s, the most served requests in any 60 s, how many
  were served in the first 60 s, when the last one came (seconds after the first), and the
  shortest time that held BUDGET + 1 served requests (-1: never that many);
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
    """The project's emulator, also noting when each request arrived and its answer's status."""

    def __init__(self, world: World, **options: Any) -> None:
        super().__init__(world, **options)
        self.arrivals: list[tuple[float, int]] = []
        self._arrivals_lock = threading.Lock()

    def handle(self, method: str, target: str, api_key: str | None) -> Reply | None:
        """Answer as the emulator does, noting the arrival time and the status."""
        arrived = time.monotonic()
        reply = super().handle(method, target, api_key)
        with self._arrivals_lock:
            self.arrivals.append((arrived, 0 if reply is None else reply.status))
        return reply

    def pacing(self, budget: int) -> dict[str, Any]:
        """Requests, 429s, and how the served ones spread over time against `budget`/min."""
        with self._arrivals_lock:
            arrivals = list(self.arrivals)
        served = sorted(at for at, status in arrivals if status != 429)
        first = served[0] if served else 0.0
        # The shortest time that held budget + 1 served requests: under 60 s means over it.
        spans = [served[i + budget] - served[i] for i in range(len(served) - budget)]
        return {
            "count": len(arrivals),
            "refused_429": sum(status == 429 for _, status in arrivals),
            "busiest_60s": busiest_window(served),
            "first_60s": sum(at - first < 60.0 for at in served),
            "last_at": (served[-1] - first) if served else 0.0,
            "shortest_span_over_budget": min(spans) if spans else -1.0,
        }


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
            elif command.startswith("window"):
                budget = int(command.split()[1]) if " " in command else args.rate_limit
                print(json.dumps(server.pacing(budget)), flush=True)
            elif command == "quit":
                break
    finally:
        server.stop()


if __name__ == "__main__":
    main()
