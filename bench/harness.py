"""What every part of the benchmark shares: the emulator process and timed child processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import psutil

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
API_KEY = "bench-key"


class Emulator:
    """bench/emulator_proc.py in a child process, driven over its stdin and stdout."""

    def __init__(
        self,
        workflows: int,
        runs: int,
        in_flight_share: float,
        rate_limit_per_minute: int = 0,
        seed: int = 7,
    ) -> None:
        self.args = [
            "--workflows", str(workflows),
            "--runs", str(runs),
            "--in-flight-share", str(in_flight_share),
            "--rate-limit", str(rate_limit_per_minute),
            "--seed", str(seed),
            "--api-key", API_KEY,
        ]  # fmt: skip
        self._process: subprocess.Popen[str] | None = None
        self.hello: dict[str, Any] = {}

    def __enter__(self) -> Emulator:
        self._process = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "emulator_proc.py"), *self.args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO_DIR,
        )
        # The first line says where it listens, once it does: no port guessing, no polling.
        line = self._stdout.readline()
        if not line:
            raise RuntimeError(f"the emulator exited early (code {self._process.wait()})")
        self.hello = json.loads(line)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        process = self._process
        if process is None:
            return
        try:
            self._command("quit", expect_answer=False)
            process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()
        self._process = None

    @property
    def _stdout(self) -> IO[str]:
        assert self._process is not None and self._process.stdout is not None
        return self._process.stdout

    def _command(self, command: str, expect_answer: bool = True) -> dict[str, Any]:
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        return json.loads(self._stdout.readline()) if expect_answer else {}

    @property
    def base_url(self) -> str:
        return str(self.hello["base_url"])

    def request_count(self) -> int:
        """Requests the emulator has received so far."""
        return int(self._command("count")["count"])

    def window(self, budget: int) -> dict[str, float]:
        """How requests spread against `budget` per minute (see emulator_proc.py)."""
        return {k: float(v) for k, v in self._command(f"window {budget}").items()}


@dataclass
class ChildRun:
    """One child process, timed from start to exit."""

    returncode: int
    wall_seconds: float
    peak_rss_mb: float
    sampled_hwm_mb: float
    cpu_seconds: float
    stdout: str
    stderr: str


def run_child(command: list[str], env: dict[str, str], cwd: Path, timeout: float = 600) -> ChildRun:
    """Run a command to its end; wall time includes process start.

    Peak RSS is the kernel's `ru_maxrss` of this child from `wait4`, which misses nothing
    between samples but also counts the benchmark's own resident set at the fork (it is
    kept small: it imports neither dlt nor pyarrow). A thread also samples the child's
    VmHWM (its high-water mark since exec) as a cross-check.
    """
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    high_water = [0]
    done = threading.Event()

    def sample() -> None:
        status = Path(f"/proc/{process.pid}/status")
        while not done.is_set():
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        high_water[0] = max(high_water[0], int(line.split()[1]))
            except (OSError, ValueError):
                pass  # exited (or not yet exec'd) between two samples
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    # Read the pipes in threads so a chatty child never blocks on a full pipe before wait4.
    outputs: dict[str, str] = {}

    def drain(name: str, stream: IO[str] | None) -> None:
        outputs[name] = stream.read() if stream is not None else ""

    readers = [
        threading.Thread(target=drain, args=("stdout", process.stdout)),
        threading.Thread(target=drain, args=("stderr", process.stderr)),
    ]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            process.kill()
            pid, status, usage = os.wait4(process.pid, 0)
            break
        time.sleep(0.002)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join()
    for reader in readers:
        reader.join()
    return ChildRun(
        returncode=process.returncode,
        wall_seconds=wall,
        peak_rss_mb=usage.ru_maxrss / 1024,  # KiB on Linux
        sampled_hwm_mb=high_water[0] / 1024,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        stdout=outputs.get("stdout", ""),
        stderr=outputs.get("stderr", ""),
    )


def own_rss_mb() -> float:
    """This process's resident set now (what a child's ru_maxrss starts from)."""
    return float(psutil.Process().memory_info().rss) / 2**20


def sync_env(base_url: str, duckdb_path: Path, dlt_dir: Path, **extra: str) -> dict[str, str]:
    """The environment a cron job would give `sixtyfour-sync`, pointed at the emulator."""
    env = dict(os.environ)
    env.update(
        {
            "SOURCES__SIXTYFOUR__API_KEY": API_KEY,
            "SOURCES__SIXTYFOUR__BASE_URL": base_url,
            "SOURCES__SIXTYFOUR__RATE_LIMIT_PER_MINUTE": "0",
            "DESTINATION__DUCKDB__CREDENTIALS": str(duckdb_path),
            "DLT_DATA_DIR": str(dlt_dir),
            "RUNTIME__DLTHUB_TELEMETRY": "false",
        }
    )
    env.update(extra)
    return env
