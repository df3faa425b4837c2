"""The dataset workspace: a folder holding `nwt.toml`, the SQLite catalog and the media files.

WORKSPACE/
  nwt.toml            per-command defaults ([fetch], [segment], ...), edited by the user
  catalog.sqlite      the single truth about what is done (see catalog.py)
  episodes/ID.mp4     downloaded or copied sources
  clips/ID/ID_00000.mp4  keyframe-aligned stream-copied clips
  prepared/ID/ID_00000/  masked 256x224 30 FPS video.mp4, audio.npy (24 kHz), mel.npy
  shards/             WebDataset tar shards per split, and dataset.json
  plans/ID/ID_00000.json  the graphic rule's overlay plan of a clip (a cache mask and report share)
  tmp/                work in progress; never read as a result
  locks/              one lock per stage, so two runs of a stage cannot collide
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import sys
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import tomli_w

from nwt_data.contract import fsync_folder, fsync_path, write_atomic
from nwt_data.errors import ConfigError, WorkspaceError

__all__ = ["Workspace", "fsync_folder", "fsync_path", "write_atomic"]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ENV_VAR = "NWT_WORKSPACE"
DEFAULT_DIR = "nwt-workspace"
CONFIG_NAME = "nwt.toml"
CATALOG_NAME = "catalog.sqlite"

EPISODE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,79}")


def check_episode_id(episode_id: str) -> str:
    """Episode ids become file names and shard keys: letters, digits, '-' and '_' only."""
    if not EPISODE_ID_RE.fullmatch(episode_id):
        suggestion = re.sub(r"[^A-Za-z0-9_-]+", "-", episode_id).strip("-_")[:80] or "episode-1"
        raise WorkspaceError(
            f"invalid episode_id {episode_id!r}",
            hint=f"use 1-80 letters, digits, '-' or '_' (first a letter or digit), e.g. {suggestion!r}",
        )
    return episode_id


def resolve_root(path: str | os.PathLike[str] | None) -> Path:
    if path is None:
        path = os.environ.get(ENV_VAR) or DEFAULT_DIR
    return Path(path).expanduser().resolve()


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.config_path = root / CONFIG_NAME
        self.catalog_path = root / CATALOG_NAME
        self.episodes_dir = root / "episodes"
        self.clips_dir = root / "clips"
        self.prepared_dir = root / "prepared"
        self.shards_dir = root / "shards"
        self.plans_dir = root / "plans"
        self.tmp_dir = root / "tmp"
        self.locks_dir = root / "locks"

    @classmethod
    def open(
        cls, path: str | os.PathLike[str] | None = None, *, create: bool = True, read_only: bool = False
    ) -> Workspace:
        """The workspace at `path`; `read_only` (status) writes nothing, so a read-only copy opens too."""
        root = resolve_root(path)
        ws = cls(root)
        if not ws.catalog_path.exists() and not create:
            raise WorkspaceError(
                f"no workspace at {root}",
                hint=f"run `nwt-data fetch MANIFEST --workspace {root}` first, or set {ENV_VAR}",
            )
        if root.exists() and not root.is_dir():
            raise WorkspaceError(f"workspace path {root} is a file, not a folder")
        if read_only:
            return ws
        for folder in (root, ws.episodes_dir, ws.clips_dir, ws.prepared_dir, ws.shards_dir, ws.tmp_dir,
                       ws.locks_dir):  # fmt: skip
            folder.mkdir(parents=True, exist_ok=True)
        if not ws.config_path.exists():
            write_atomic(ws.config_path, tomli_w.dumps(_DEFAULT_FILE).encode())
        return ws

    # --- configuration -------------------------------------------------------------------
    def config_table(self, section: str) -> dict[str, Any]:
        try:
            data = tomllib.loads(self.config_path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise ConfigError(
                f"cannot read {self.config_path}: {err}", hint="fix or delete the file"
            ) from err
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}] in {self.config_path} must be a table")
        return table

    # --- paths -----------------------------------------------------------------------------
    def episode_clip_dir(self, episode_id: str) -> Path:
        return self.clips_dir / check_episode_id(episode_id)

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def new_temp_dir(self, prefix: str) -> Path:
        path = self.tmp_dir / f"{prefix}-{uuid.uuid4().hex[:12]}"
        path.mkdir(parents=True)
        return path

    def clear_temp(self, prefix: str) -> None:
        """Remove work-in-progress left by a killed run of a stage (call under its lock)."""
        for path in self.tmp_dir.glob(f"{prefix}-*"):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def stage_lock(self, stage: str) -> Iterator[None]:
        """Hold an exclusive lock on a stage; the OS drops it when the process dies."""
        with open(self.locks_dir / f"{stage}.lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as err:
                raise WorkspaceError(
                    f"another `nwt-data {stage}` is running on {self.root}",
                    hint="wait for it to finish or stop it",
                ) from err
            yield

    @contextlib.contextmanager
    def data_locks(
        self, command: str, *, reads: Iterable[str] = (), rewrites: Iterable[str] = ()
    ) -> Iterator[None]:
        """Lock the kinds of data a stage reads (shared) and rewrites (exclusive), across stages.

        `segment --redo` rewrites the clips `mask` and `flag` read; `mask` rewrites the prepared
        folders `shard` reads. A stage that would rewrite what a running one reads (or read what one
        is rewriting) is refused at once. Call it while holding the stage's own lock.
        """
        reads, rewrites = set(reads), set(rewrites)
        with contextlib.ExitStack() as stack:
            for name in sorted(reads | rewrites):
                handle = stack.enter_context(open(self.locks_dir / f"data-{name}.lock", "a"))
                exclusive = name in rewrites
                try:
                    fcntl.flock(handle, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
                except BlockingIOError as err:
                    others = " or ".join(f"`nwt-data {s}`" for s in self.running_stages(but=command))
                    doing = "would rewrite" if exclusive else "reads"
                    what = _DATA_NAMES.get(name, name)
                    raise WorkspaceError(
                        f"`nwt-data {command}` {doing} the {what} that {others or 'another command'} is"
                        f" {'reading' if exclusive else 'rewriting'} on {self.root}",
                        hint="wait for it to finish, then run this again",
                    ) from err
            yield

    def running_stages(self, *, but: str = "") -> list[str]:
        """The stages whose lock someone holds now (a probe: each lock is released at once)."""
        running = []
        for path in sorted(self.locks_dir.glob("*.lock")):
            stage = path.stem
            if stage.startswith("data-") or stage == but.split()[0]:
                continue
            with open(path, "a") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    running.append(stage)
        return running


# How the cross-stage locks name the data they guard, in messages.
_DATA_NAMES = {"prepared": "prepared clips"}


def clear_trash(folder: Path) -> None:
    """Remove `.NAME.old-*` folders a run killed inside `replace_dir` left behind."""
    for trash in folder.glob("**/.*.old-*"):
        shutil.rmtree(trash, ignore_errors=True)


def replace_dir(src: Path, dst: Path) -> None:
    """Move the finished folder `src` to `dst`, replacing what a killed run may have left there."""
    fsync_path(src)
    if dst.exists():
        trash = dst.with_name(f".{dst.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(dst, trash)
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(src, dst)
    fsync_folder(dst.parent)


_DEFAULT_FILE: dict[str, Any] = {
    "fetch": {"max_height": 720, "retries": 3},
    "segment": {"segment_time": 4.0, "trim": 0.25, "min_duration": 2.0, "crop": "paper"},
    "mask": {"threshold": 185, "min_area": 4000, "max_area": 100000, "min_height": 80},
    "shard": {"seed": 0},
    "run": {"executor": "local"},
}
