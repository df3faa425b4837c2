"""Killing `nwt-data` with SIGKILL at random moments and reading the workspace it leaves.

Shared by the resume tests (test_resume.py: fetch and segment; test_resume_stages.py: flag, mask,
shard and review --import): start the real CLI as its own process, SIGKILL it once it is doing
work (or while it has a temporary file open), then compare catalog rows and file hashes with an
uninterrupted run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# `nwt-data` as its own process (run in the logs folder, so nwt_data comes from the environment).
NWT_DATA = [sys.executable, "-c", "from nwt_data.cli.app import main; main()"]

# Columns that differ between two correct runs: when things happened, and how often fetch was tried.
VOLATILE = frozenset({"added_at", "fetched_at", "segmented_at", "reviewed_at", "fetch_attempts"})


# --- running and killing nwt-data --------------------------------------------------------------------
@dataclass
class Kill:
    how: str  # 'timed', 'after-progress' or 'mid-write' (see kill_repeatedly)
    at: float  # seconds after the start
    killed: bool  # False: the run finished first
    before: tuple[int, ...]  # the workspace's progress (see *_progress) before the run
    after: tuple[int, ...]  # and after it was killed
    left_temp: bool = False  # a temporary file the killed run made was still there after the kill

    @property
    def mid_work(self) -> bool:
        """The run was killed after it had changed the workspace, or while it was writing a file."""
        return self.killed and (self.after != self.before or self.left_temp)


@dataclass
class Interrupted:
    kills: list[Kill] = field(default_factory=list)

    @property
    def mid_work(self) -> int:
        return sum(k.mid_work for k in self.kills)

    @property
    def left_temp(self) -> int:
        return sum(k.killed and k.left_temp for k in self.kills)

    def describe(self) -> str:
        return ", ".join(
            f"{k.how} {k.at:.2f}s {'killed' if k.killed else 'finished'} {k.before}->{k.after}"
            + (" (temp file left)" if k.killed and k.left_temp else "")
            for k in self.kills
        )


def live_group_members(pgid: int) -> list[str]:
    """Processes (not zombies) still in process group `pgid`, as 'pid command'; Linux only."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name_end = text.rfind(")")
        fields = text[name_end + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(f"{stat.parent.name} {text[text.find('(') + 1 : name_end]}")
    return found


@dataclass(frozen=True)
class Timing:
    total: float  # seconds from start to exit
    work: float  # seconds from the first visible change of the workspace to exit


def run_to_end(args: list[str], log: Path, progress: Callable[[], tuple[int, ...]]) -> Timing:
    """Run `nwt-data ARGS` to completion (it must exit 0), timing it and the part that did work."""
    before, first = progress(), None
    with open(log, "ab") as out:
        out.write(f"\n=== {' '.join(args)} ===\n".encode())
        out.flush()
        start = time.monotonic()
        proc = subprocess.Popen([*NWT_DATA, *args], stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)
        while proc.poll() is None:
            if first is None and progress() != before:
                first = time.monotonic()
            if time.monotonic() - start > 120:
                proc.kill()
            time.sleep(0.01)
        end = time.monotonic()
    assert proc.returncode == 0, f"nwt-data {' '.join(args)} failed:\n{log.read_text()[-3000:]}"
    return Timing(end - start, end - (first or end))


def kill_repeatedly(
    args: list[str],
    log: Path,
    rng: random.Random,
    reference: Timing,
    progress: Callable[[], tuple[int, ...]],
    kills: int,
    *,
    writing: Callable[[], frozenset[str]] | None = None,
    most_changes: int = 4,
    enough: int | None = None,
) -> Interrupted:
    """Start `nwt-data ARGS` and SIGKILL it at a random moment, up to `kills` times.

    Two kinds of kill, 'timed' every other time from the fourth on. 'timed': after a random delay
    within the first 70% of the reference run's time (each resumed run has less left to do), which
    also hits start-up and the last steps. 'after-progress': once the run has changed the workspace
    1-4 times as `progress` sees it (downloaded bytes, temp files, renamed files, catalog rows), plus
    a random delay of up to a fifth of the reference run's working time: such kills land in the middle
    of work however fast or busy the machine is. With `writing` (the names of the temporary files
    on disk), every other kill is 'mid-write' instead: the moment the run has made one (a name that was
    not there before it started), so it dies with the file on disk and the next run must clear it.
    `most_changes` caps the 1-4 (stages with few items); `enough` stops once that many kills landed
    mid-work.

    Only the main process is killed, as `kill -9 PID` does; its ffmpeg children must die with it.
    Stops early when a run finishes before its kill (then there is nothing left to interrupt).
    """
    result = Interrupted()
    for attempt in range(kills):
        if writing is not None and attempt % 2 == 1:
            how = "mid-write"
        else:
            how = "timed" if attempt >= 3 and attempt % 2 == 1 else "after-progress"
        before = progress()
        stale = writing() if writing is not None else frozenset()
        with open(log, "ab") as out:
            out.write(f"\n=== {' '.join(args)}: {how} kill ===\n".encode())
            out.flush()
            start = time.monotonic()
            proc = subprocess.Popen(
                [*NWT_DATA, *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=log.parent,
            )
            if how == "after-progress":
                changes, seen = rng.randint(1, most_changes), before
                while changes and proc.poll() is None and time.monotonic() - start < 60:
                    if (now := progress()) != seen:
                        changes, seen = changes - 1, now
                    else:
                        time.sleep(0.01)
                deadline = time.monotonic() + rng.uniform(0.0, 0.2) * reference.work
            elif how == "mid-write":
                assert writing is not None
                while proc.poll() is None and not writing() - stale and time.monotonic() - start < 60:
                    time.sleep(0.001)
                deadline = time.monotonic()
            else:
                deadline = start + rng.uniform(0.05, 0.7) * reference.total
            try:
                code = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                code = proc.wait()
            at = time.monotonic() - start
        killed = code == -signal.SIGKILL
        assert killed or code == 0, f"nwt-data {' '.join(args)} failed:\n{log.read_text()[-3000:]}"
        if sys.platform == "linux":
            deadline = time.monotonic() + 5
            while (orphans := live_group_members(proc.pid)) and time.monotonic() < deadline:
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            assert not orphans, f"children outlived a kill -9 of nwt-data: {orphans}"
        left = writing is not None and bool(writing() - stale)
        result.kills.append(Kill(how, at, killed, before, progress(), left))
        if not killed or (enough is not None and result.mid_work >= enough):
            break
    return result


# --- reading a workspace -------------------------------------------------------------------------------
def read_table(ws: Path, table: str, order: str, volatile: frozenset[str] = VOLATILE) -> list[dict[str, Any]]:
    """A catalog table's rows in `order`, without the columns that differ between two correct runs."""
    conn = sqlite3.connect(f"file:{ws / 'catalog.sqlite'}?mode=ro", uri=True)
    try:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
    finally:
        conn.close()
    return [{k: row[k] for k in row.keys() if k not in volatile} for row in rows]  # noqa: SIM118


def read_runs(ws: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{ws / 'catalog.sqlite'}?mode=ro", uri=True)
    try:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM runs ORDER BY run_id")]
    finally:
        conn.close()


def count_where(ws: Path, sql: str) -> int:
    if not (ws / "catalog.sqlite").exists():
        return 0
    conn = sqlite3.connect(f"file:{ws / 'catalog.sqlite'}?mode=ro", uri=True)
    try:
        return int(conn.execute(sql).fetchone()[0])
    except sqlite3.DatabaseError:  # a run was killed before the schema was written
        return 0
    finally:
        conn.close()


def row_differences(expected: list[dict[str, Any]], actual: list[dict[str, Any]], key: str) -> list[str]:
    """Readable differences between two lists of catalog rows, matched by `key`."""
    want, got = {r[key]: r for r in expected}, {r[key]: r for r in actual}
    out = [f"missing row {k}" for k in want.keys() - got.keys()]
    out += [f"extra row {k}" for k in got.keys() - want.keys()]
    for k in want.keys() & got.keys():
        out += [
            f"{k}.{column}: {want[k][column]!r} != {got[k].get(column)!r}"
            for column in want[k]
            if want[k][column] != got[k].get(column)
        ]
    return sorted(out)


def files_under(folder: Path) -> list[Path]:
    """The files under `folder`, none when it is gone.

    The progress probes walk folders a live run is renaming and removing (a finished temp folder
    moved into place, a killed run's cleared at start-up): what vanishes mid-walk is not counted,
    where Path.rglob would raise FileNotFoundError.
    """
    return sorted(Path(top, name) for top, _, names in os.walk(folder) for name in names
                  if Path(top, name).is_file())  # fmt: skip


def size_of(path: Path) -> int:
    """The size of a file, 0 when a live run has just renamed or removed it."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def hashes(ws: Path, *folders: str) -> dict[str, str]:
    """sha256 of every file under the given workspace folders (hidden ones aside), by relative path."""
    return {
        p.relative_to(ws).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in folders
        for p in files_under(ws / folder)
        if not any(part.startswith(".") for part in p.relative_to(ws).parts)
    }


def hidden_entries(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob(".*"))
