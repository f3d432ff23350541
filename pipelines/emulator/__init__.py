"""An emulator of the Sixtyfour workflow-runs API, for the demo, the tests and the benchmark.

It serves GET /workflows, /workflows/runs and /workflows/runs/{run_id}/live_status over real
HTTP with the real API's parameters, ordering, limits, error bodies and rate-limit headers
(see sixtyfour-api.md), from a deterministic world whose clock tests move, and with faults
that can be switched on while it runs. The sync never imports it, nor it the sync.

    world = World(WorldConfig(runs=500))
    with EmulatorServer(world) as server:
        server.faults.add(Fault(status=503))
        ...  # point the sync at server.base_url with x-api-key "test-key"
"""

from __future__ import annotations

from .faults import Fault, FaultQueue, Reply
from .server import EmulatorServer, serve_forever
from .world import UnknownWorkflow, World, WorldConfig

__all__ = [
    "EmulatorServer",
    "Fault",
    "FaultQueue",
    "Reply",
    "UnknownWorkflow",
    "World",
    "WorldConfig",
    "serve_forever",
]
