"""One sync at a time per pipeline: overlapping runs would corrupt dlt's local state."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from pipelines.sixtyfour.errors import SyncLockedError


class PipelineLock:
    """An exclusive, non-blocking lock on a file beside the pipeline's state.

    flock() locks belong to the open file: the kernel drops them when the process dies,
    however it dies, so a killed sync never leaves a lock that blocks the next one.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> PipelineLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise SyncLockedError(
                f"another sync of this pipeline is running (pid {holder}); "
                "this one exits without touching anything"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
