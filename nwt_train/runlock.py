"""One writer per output folder: a trainer's run folder, an encode's Memcode folder.

The lock is `FOLDER/.lock`, held with flock(2) for the whole run and holding the owner's pid and host.
The kernel drops the lock when its process dies (even by SIGKILL), so a lock file left by a killed run
is stale and taken over; a live owner makes a second run fail with one line naming its pid. While the
lock is held nothing else writes here, so temporary files (`.*.tmp`) left by a killed run are removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from nwt_train.errors import TrainError

LOCK_NAME = ".lock"


class FolderLocked(TrainError):
    """Another live process writes to this folder."""

    kind = "locked"


def stale_temporaries(folder: Path) -> list[Path]:
    """Files written under a temporary name (`.NAME.XXXX.tmp`) that were never renamed into place."""
    return sorted(p for p in folder.glob(".*.tmp") if p.is_file())


@contextlib.contextmanager
def claim(folder: Path, what: str, *, enabled: bool = True) -> Iterator[list[Path]]:
    """Hold `folder` for this process; yields the stale temporaries it removed.

    A folder this call had to create is removed again when the body fails and left only the lock.
    """
    if not enabled:
        yield []
        return
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    ok = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            raise FolderLocked(
                f"{folder} is in use by another {what} (pid and host: {owner})",
                "wait for it to finish, or use another output folder",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        removed = stale_temporaries(folder)
        for stale in removed:
            stale.unlink(missing_ok=True)
        yield removed
        ok = True
    finally:
        os.close(fd)  # releases the flock
        if not ok and created and [p.name for p in folder.iterdir()] == [LOCK_NAME]:
            path.unlink(missing_ok=True)
            folder.rmdir()
