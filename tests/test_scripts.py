"""The cron wrapper: it runs the repository's sync, logs every line with a time, and passes
the sync's exit code through, logging exit 4 (another sync running) as a skip."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from pipelines.config import REPO_DIR
from pipelines.runner import lock_for, make_pipeline
from tests.conftest import Harness, cli_env

WRAPPER = REPO_DIR / "scripts" / "sixtyfour-sync-cron.sh"
# 2025-01-31T09:15:00+0000 [4242] the line
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \[\d+\] ")


def run_wrapper(
    harness: Harness, log: Path, *args: str, wrapper: Path = WRAPPER, **env: str
) -> subprocess.CompletedProcess[str]:
    """The wrapper as cron starts it: from another directory, pointed at the emulator."""
    return subprocess.run(
        [str(wrapper), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(harness, SIXTYFOUR_SYNC_LOG=str(log), **env),
        cwd=harness.duckdb_path.parent,
    )


def log_lines(log: Path) -> list[str]:
    lines = log.read_text().splitlines()
    assert lines and all(LOG_LINE.match(line) for line in lines), lines
    return [LOG_LINE.sub("", line) for line in lines]


def test_wrapper_is_clean_bash() -> None:
    assert subprocess.run(["bash", "-n", str(WRAPPER)]).returncode == 0
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed; only `bash -n` was checked")
    result = subprocess.run(["shellcheck", str(WRAPPER)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_sync_through_the_wrapper_exits_0_quietly_and_appends_timestamped_lines(
    harness: Harness, tmp_path: Path
) -> None:
    log = tmp_path / "logs" / "sync.log"
    first = run_wrapper(harness, log, "--no-details")
    assert first.returncode == 0, log.read_text() if log.exists() else first.stderr
    assert (first.stdout, first.stderr) == ("", "")  # cron mails nothing when all is well
    lines = log_lines(log)
    assert lines[0] == "start: sixtyfour-sync run --no-details"
    assert lines[1].startswith(f"run ok: {len(harness.world.runs())} runs loaded")
    assert lines[-1] == "done (exit 0)"
    assert harness.rows("select count(*) from sixtyfour.workflow_runs") == [
        (len(harness.world.runs()),)
    ]

    harness.world.advance(600, new_runs=5)
    second = run_wrapper(harness, log, "--no-details")
    assert second.returncode == 0, log.read_text()
    lines = log_lines(log)
    assert [line for line in lines if line.startswith("start:")] == [
        "start: sixtyfour-sync run --no-details"
    ] * 2
    assert lines[-1] == "done (exit 0)"


def test_sync_while_another_holds_the_lock_is_logged_as_a_skip_and_exits_4(
    harness: Harness, tmp_path: Path
) -> None:
    log = tmp_path / "sync.log"
    with lock_for(make_pipeline(harness.target)):
        result = run_wrapper(harness, log)
    assert result.returncode == 4
    assert result.stderr == ""  # an overlap now and then is not worth a mail
    lines = log_lines(log)
    assert lines[0] == "start: sixtyfour-sync run"
    assert any("another sync of this pipeline is running" in line for line in lines), lines
    assert lines[-1] == "skipped (exit 4): another sync of this pipeline is still running"
    assert not harness.duckdb_path.exists()


def test_failed_sync_passes_its_exit_code_through_and_says_so_on_stderr(
    harness: Harness, tmp_path: Path
) -> None:
    log = tmp_path / "sync.log"
    result = run_wrapper(harness, log, SOURCES__SIXTYFOUR__API_KEY="wrong-key")
    assert result.returncode == 2  # the key was rejected
    alert = "failed (exit 2); its error line is in the log"
    assert result.stderr == f"sixtyfour-sync: {alert} (log: {log})\n"
    lines = log_lines(log)
    assert any(line.startswith("error: ") for line in lines), lines
    assert lines[-1] == alert


@pytest.fixture
def fake_checkout(tmp_path: Path) -> Path:
    """A copy of the wrapper in a checkout whose sixtyfour-sync exits with $FAKE_EXIT."""
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy2(WRAPPER, checkout / "scripts" / WRAPPER.name)
    fake = checkout / ".venv" / "bin" / "sixtyfour-sync"
    fake.parent.mkdir(parents=True)
    fake.write_text('#!/bin/sh\necho "fake $*"\necho "to stderr" >&2\nexit "$FAKE_EXIT"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return checkout


@pytest.mark.parametrize(
    ("code", "last_line", "alerts"),
    [
        (0, "done (exit 0)", False),
        (3, "done with a gap (exit 3)", True),
        (4, "skipped (exit 4)", False),
        (6, "failed (exit 6)", True),
    ],
)
def test_default_log_is_in_the_checkout_and_every_exit_code_passes_through(
    harness: Harness, fake_checkout: Path, code: int, last_line: str, alerts: bool
) -> None:
    env = cli_env(harness, FAKE_EXIT=str(code))
    env.pop("SIXTYFOUR_SYNC_LOG", None)
    result = subprocess.run(
        [str(fake_checkout / "scripts" / WRAPPER.name), "--no-details"],
        capture_output=True, text=True, timeout=30, env=env, cwd=harness.duckdb_path.parent,
    )  # fmt: skip
    assert result.returncode == code
    assert bool(result.stderr) is alerts, result.stderr
    lines = log_lines(fake_checkout / "var" / "log" / "sixtyfour-sync.log")
    assert lines[1:3] == ["fake run --no-details", "to stderr"]
    assert lines[-1].startswith(last_line)


def test_missing_installation_exits_2_with_the_fix(harness: Harness, fake_checkout: Path) -> None:
    shutil.rmtree(fake_checkout / ".venv")
    log = fake_checkout / "sync.log"
    result = run_wrapper(harness, log, wrapper=fake_checkout / "scripts" / WRAPPER.name)
    assert result.returncode == 2
    assert "run 'make setup'" in result.stderr
    assert "run 'make setup'" in log_lines(log)[-1]
