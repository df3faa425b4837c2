"""The workspace catalog: an embedded SQLite database, the single truth about what is done.

One row per episode and per clip. A stage marks an item done only after its files are durable
(written under a temporary name, then renamed), and it writes an item's rows in one transaction, so a
run killed at any moment leaves the catalog consistent. Only the driver process of a command writes;
workers (threads, processes or Ray tasks) return values. WAL mode lets `status` and the review app read
while a stage writes.

This module is the only place with SQL. Readers get typed, frozen records (`Episode`, `Clip`,
`Shard`, `Run`) from named queries; statuses are the enums below. The "usable clip" rule lives in
`_USABLE` alone.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from nwt_data.errors import WorkspaceError

# 2: per-stage attempts, flag error kind, the mask settings of each clip, run status and error.
SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS episodes (
    episode_id      TEXT PRIMARY KEY,
    url             TEXT NOT NULL,             -- URL or absolute local path
    source_kind     TEXT NOT NULL,             -- 'url' (yt-dlp) or 'file' (local copy)
    manifest        TEXT,                      -- manifest the episode came from
    extra           TEXT NOT NULL DEFAULT '{}',-- optional manifest columns, JSON
    added_at        TEXT NOT NULL,
    fetch_status    TEXT NOT NULL DEFAULT 'pending',  -- pending | done | failed
    fetch_error_kind TEXT,                     -- see FetchError.KINDS
    fetch_error     TEXT,
    fetch_attempts  INTEGER NOT NULL DEFAULT 0,
    fetched_at      TEXT,
    path            TEXT,                      -- relative to the workspace
    size            INTEGER,
    sha256          TEXT,
    downloader      TEXT,                      -- e.g. 'yt-dlp 2026.10.26' or 'copy'
    probe           TEXT,                      -- probe facts, JSON
    segment_status  TEXT NOT NULL DEFAULT 'pending',  -- pending | done | failed | rejected
    segment_error_kind TEXT,
    segment_error   TEXT,
    segmented_at    TEXT,
    segment_config  TEXT,                      -- the SegmentConfig that made the clips, JSON
    segment_attempts INTEGER NOT NULL DEFAULT 0,
    episode_index   INTEGER                    -- the model's episode embedding index (set by shard)
);

CREATE TABLE IF NOT EXISTS clips (
    clip_id         TEXT PRIMARY KEY,          -- '{episode_id}_{clip_index:05d}'
    episode_id      TEXT NOT NULL REFERENCES episodes(episode_id),
    clip_index      INTEGER NOT NULL,
    path            TEXT NOT NULL,             -- stream-copied segment, relative to the workspace
    start_time      REAL NOT NULL,             -- segment span in the episode timeline, seconds
    end_time        REAL NOT NULL,
    start_pts       INTEGER NOT NULL,          -- the same span exactly, in `time_base` ticks
    end_pts         INTEGER NOT NULL,
    time_base       TEXT NOT NULL,
    clip_offset     REAL NOT NULL,             -- episode time = time inside the clip file + clip_offset
    trim_start      REAL,                      -- the kept window (after step 4), episode timeline
    trim_end        REAL,
    crop_x INTEGER, crop_y INTEGER, crop_w INTEGER, crop_h INTEGER,  -- step 3, source pixels
    duration        REAL,                      -- trim_end - trim_start
    frame_count     INTEGER,                   -- source frames inside the kept window
    segment_frame_count INTEGER NOT NULL,      -- frames in the whole segment file
    has_audio       INTEGER NOT NULL,
    av_offset       REAL,                      -- first audio minus first video time in the file, s
    status          TEXT NOT NULL,             -- ok | too_short | rejected
    reason          TEXT,                      -- why too_short / rejected
    review          TEXT,                      -- NULL (unreviewed) | accepted | rejected
    review_reason   TEXT,
    review_note     TEXT,
    reviewer        TEXT,
    reviewed_at     TEXT,
    mask_status     TEXT NOT NULL DEFAULT 'pending',  -- pending | done | failed
    mask_error_kind TEXT,
    mask_error      TEXT,
    mask_attempts   INTEGER NOT NULL DEFAULT 0,
    mask_config     TEXT,                      -- the mask settings this clip was prepared with, JSON
    prepared_path   TEXT,                      -- folder with video.mp4, audio.npy, mel.npy
    out_frames      INTEGER,                   -- frames at 30 FPS: round(duration * 30)
    masked_frames   INTEGER,                   -- output frames with at least one painted box
    masked_fraction REAL,                      -- mean painted share of the frame area
    split           TEXT,                      -- train | val | test, fixed once assigned
    shard           TEXT,                      -- the shard that holds the clip
    flag_status     TEXT NOT NULL DEFAULT 'pending',  -- pending | done | failed (automatic pre-flags)
    flag_error_kind TEXT,
    flag_error      TEXT,
    flag_attempts   INTEGER NOT NULL DEFAULT 0,
    faces           INTEGER,                   -- median faces found in sampled frames
    flag_no_face    INTEGER,                   -- no face, or more than one face
    flag_many_faces INTEGER,
    flag_cut        INTEGER,                   -- a shot cut or title transition inside the clip
    flag_overlay    INTEGER,                   -- the mask heuristic found an overlay box
    flag_silence    INTEGER,                   -- no speech energy in the audio
    flag_small_face INTEGER,                   -- a face, but shorter than [flags] small_face of the crop
    flag_no_speech  INTEGER,                   -- the VAD heard (almost) no speech: music, applause, silence
    flag_low_speech INTEGER,                   -- the VAD heard speech in less than [flags] low_speech of it
    face_height     REAL,                      -- median largest face height / crop height
    speech_ratio    REAL,                      -- share of 32 ms steps the VAD calls speech
    flags           TEXT,                      -- the raised flags, comma separated ('' = none)
    UNIQUE (episode_id, clip_index)
);

CREATE TABLE IF NOT EXISTS review_log (      -- every decision ever made, for undo and audit
    entry_id    INTEGER PRIMARY KEY,
    clip_id     TEXT NOT NULL REFERENCES clips(clip_id),
    review      TEXT,                          -- accepted | rejected | NULL (an undo back to unreviewed)
    review_reason TEXT,
    review_note TEXT,
    reviewer    TEXT NOT NULL,
    at          TEXT NOT NULL,
    previous    TEXT NOT NULL,                 -- the clip's decision before, JSON
    undone      INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS shards (
    name        TEXT PRIMARY KEY,              -- e.g. 'train-000003.tar'
    split       TEXT NOT NULL,
    samples     INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS runs (
    run_id      INTEGER PRIMARY KEY,
    command     TEXT NOT NULL,
    config      TEXT NOT NULL,                 -- effective config, JSON
    nwt_version TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    summary     TEXT,                          -- per-status counts, JSON
    status      TEXT NOT NULL DEFAULT 'running', -- running | finished | failed | killed
    error       TEXT                           -- why a failed run stopped
);
"""


# Created after older workspaces got their missing columns.
INDEXES = """
CREATE INDEX IF NOT EXISTS clips_by_episode ON clips(episode_id);
CREATE UNIQUE INDEX IF NOT EXISTS episodes_by_index ON episodes(episode_index);
"""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- statuses ---------------------------------------------------------------------------------------
class StrEnum(str, Enum):
    """A str enum that prints as its value (enum.StrEnum needs Python 3.11)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Status(StrEnum):
    """Where an item stands in one stage (fetch, segment, flag, mask)."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    REJECTED = "rejected"  # segment only: the whole episode is unusable


class ClipStatus(StrEnum):
    OK = "ok"
    TOO_SHORT = "too_short"
    REJECTED = "rejected"


class Review(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class RunStatus(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"  # stopped by an error or an interrupt; finished_at says when
    KILLED = "killed"  # found unfinished by a later run of the same command (finished_at stays empty)


# A clip people and training may use: segment kept it, and review did not reject it.
_USABLE = "status = 'ok' AND (review IS NULL OR review = 'accepted')"
_REVIEWED = "status = 'ok' AND review = 'accepted'"


# --- records ----------------------------------------------------------------------------------------
R = TypeVar("R", bound="Record")


class Record:
    """A frozen row. Like sqlite3.Row it also reads as `record["column"]`, `record[i]` and a sequence."""

    ENUMS: ClassVar[dict[str, type[StrEnum]]] = {}

    def __getitem__(self, name: str | int) -> Any:
        if isinstance(name, int):
            return tuple(self)[name]
        try:
            return getattr(self, name)
        except AttributeError:
            raise KeyError(name) from None

    def __iter__(self) -> Iterator[Any]:
        return (getattr(self, f.name) for f in dataclasses.fields(self))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(dataclasses.fields(self))  # type: ignore[arg-type]

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)]  # type: ignore[arg-type]

    @classmethod
    def from_row(cls: type[R], row: sqlite3.Row) -> R:
        values = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            value = row[f.name]
            enum = cls.ENUMS.get(f.name)
            values[f.name] = enum(value) if enum is not None and value is not None else value
        return cls(**values)


@dataclass(frozen=True)
class Episode(Record):
    ENUMS: ClassVar[dict[str, type[StrEnum]]] = {"fetch_status": Status, "segment_status": Status}

    episode_id: str
    url: str
    source_kind: str
    manifest: str | None
    extra: str
    added_at: str
    fetch_status: Status
    fetch_error_kind: str | None
    fetch_error: str | None
    fetch_attempts: int
    fetched_at: str | None
    path: str | None
    size: int | None
    sha256: str | None
    downloader: str | None
    probe: str | None
    segment_status: Status
    segment_error_kind: str | None
    segment_error: str | None
    segmented_at: str | None
    segment_config: str | None
    segment_attempts: int
    episode_index: int | None


@dataclass(frozen=True)
class Clip(Record):
    ENUMS: ClassVar[dict[str, type[StrEnum]]] = {
        "status": ClipStatus,
        "review": Review,
        "mask_status": Status,
        "flag_status": Status,
    }

    clip_id: str
    episode_id: str
    clip_index: int
    path: str
    start_time: float
    end_time: float
    start_pts: int
    end_pts: int
    time_base: str
    clip_offset: float
    trim_start: float | None
    trim_end: float | None
    crop_x: int | None
    crop_y: int | None
    crop_w: int | None
    crop_h: int | None
    duration: float | None
    frame_count: int | None
    segment_frame_count: int
    has_audio: int
    av_offset: float | None
    status: ClipStatus
    reason: str | None
    review: Review | None
    review_reason: str | None
    review_note: str | None
    reviewer: str | None
    reviewed_at: str | None
    mask_status: Status
    mask_error_kind: str | None
    mask_error: str | None
    mask_attempts: int
    mask_config: str | None
    prepared_path: str | None
    out_frames: int | None
    masked_frames: int | None
    masked_fraction: float | None
    split: str | None
    shard: str | None
    flag_status: Status
    flag_error_kind: str | None
    flag_error: str | None
    flag_attempts: int
    faces: int | None
    flag_no_face: int | None
    flag_many_faces: int | None
    flag_cut: int | None
    flag_overlay: int | None
    flag_silence: int | None
    flag_small_face: int | None
    flag_no_speech: int | None
    flag_low_speech: int | None
    face_height: float | None
    speech_ratio: float | None
    flags: str | None


@dataclass(frozen=True)
class Shard(Record):
    name: str
    split: str
    samples: int
    bytes: int
    sha256: str
    created_at: str


@dataclass(frozen=True)
class Run(Record):
    ENUMS: ClassVar[dict[str, type[StrEnum]]] = {"status": RunStatus}

    run_id: int
    command: str
    config: str
    nwt_version: str
    started_at: str
    finished_at: str | None
    summary: str | None
    status: RunStatus
    error: str | None


@dataclass(frozen=True)
class EpisodeSource:
    episode_id: str
    url: str
    source_kind: str  # 'url' | 'file'
    manifest: str | None
    extra: dict[str, str]


@dataclass(frozen=True)
class ReviewEntry:
    """One logged review decision: what it set, and the decision it replaced."""

    entry_id: int
    clip_id: str
    review: str | None
    previous: dict[str, Any]


@dataclass(frozen=True)
class Failure:
    """An item an earlier run could not finish, as the summary lists it."""

    key: str
    kind: str
    error: str


# Which columns hold each stage's per-item state, for the queries all stages share.
_STAGE_TABLE = {"fetch": "episodes", "segment": "episodes", "flag": "clips", "mask": "clips"}
_STAGE_SCOPE = {"fetch": "1", "segment": "1", "flag": "status = 'ok'", "mask": "1"}


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """Open for reading only. A WAL catalog in a folder we cannot write has no -shm to share: then
    read it as an immutable file (nobody can be writing to it there)."""
    uri = Path(path).resolve().as_uri()
    for suffix in ("?mode=ro", "?mode=ro&immutable=1"):
        conn = sqlite3.connect(uri + suffix, uri=True, timeout=30.0, isolation_level=None)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            conn.close()
    raise WorkspaceError(f"cannot read the catalog {path}", hint="check that the file is there and readable")


class Catalog:
    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        if read_only:  # status: no PRAGMA or schema writes, so a read-only workspace can be looked at
            self.conn = _connect_read_only(path)
            self.conn.row_factory = sqlite3.Row
            self._check_version()
            return
        self.conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self._check_version()
        self.conn.executescript(SCHEMA)
        self._add_missing_columns()
        self.conn.executescript(INDEXES)
        self.conn.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )

    def _check_version(self) -> None:
        """Refuse a catalog written by a newer nwt: its columns may mean things this one does not know."""
        has_meta = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if not has_meta:
            return
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row is not None and str(row[0]).isdigit() else 0
        if version > SCHEMA_VERSION:
            raise WorkspaceError(
                f"the catalog {self.path} has schema version {version};"
                f" this nwt knows up to {SCHEMA_VERSION}",
                hint="upgrade nwt (pip install -U nwt) to work on this workspace",
            )

    def _add_missing_columns(self) -> None:
        """Bring a workspace made by an older nwt up to SCHEMA: add the columns it lacks."""
        reference = sqlite3.connect(":memory:")
        reference.executescript(SCHEMA)
        for (table,) in reference.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            have = {row[1] for row in self.conn.execute(f"PRAGMA table_info({table})")}
            for _, name, kind, notnull, default, _ in reference.execute(f"PRAGMA table_info({table})"):
                if name not in have:
                    extra = f" NOT NULL DEFAULT {default}" if notnull and default is not None else ""
                    extra = extra or (f" DEFAULT {default}" if default is not None else "")
                    self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}{extra}")
        reference.close()

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # --- runs ---------------------------------------------------------------------------------
    def start_run(self, command: str, config: dict[str, Any]) -> int:
        from nwt_data import __version__

        cur = self.conn.execute(
            "INSERT INTO runs(command, config, nwt_version, started_at, status) VALUES (?, ?, ?, ?, ?)",
            (command, json.dumps(config, sort_keys=True), __version__, now(), RunStatus.RUNNING.value),
        )
        return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, summary: dict[str, Any], *, status: RunStatus = RunStatus.FINISHED,
                   error: str | None = None) -> None:  # fmt: skip
        self.conn.execute(
            "UPDATE runs SET finished_at = ?, summary = ?, status = ?, error = ? WHERE run_id = ?",
            (now(), json.dumps(summary, sort_keys=True), status.value, error, run_id),
        )

    def mark_killed_runs(self, command: str) -> int:
        """Runs of `command` still 'running' while we hold its lock died without a word (SIGKILL)."""
        cur = self.conn.execute(
            "UPDATE runs SET status = ? WHERE command = ? AND status = ? AND finished_at IS NULL",
            (RunStatus.KILLED.value, command, RunStatus.RUNNING.value),
        )
        return cur.rowcount

    def runs(self, command: str | None = None) -> list[Run]:
        rows = self.conn.execute(
            "SELECT * FROM runs WHERE ? IS NULL OR command = ? ORDER BY run_id", (command, command)
        ).fetchall()
        return [Run.from_row(r) for r in rows]

    # --- shared by the stages --------------------------------------------------------------------
    def count_done(self, stage: str) -> int:
        table, scope = _STAGE_TABLE[stage], _STAGE_SCOPE[stage]
        column = "mask_status" if stage == "mask" else f"{stage}_status"
        (n,) = self.conn.execute(
            f"SELECT COUNT(*) FROM {table} WHERE {scope} AND {column} = 'done'"
        ).fetchone()
        return int(n)

    def failures(self, stage: str) -> list[Failure]:
        """Items an earlier run of `stage` left failed, with their error kind and message."""
        table, scope = _STAGE_TABLE[stage], _STAGE_SCOPE[stage]
        key = "episode_id" if table == "episodes" else "clip_id"
        rows = self.conn.execute(
            f"SELECT {key}, {stage}_error_kind, {stage}_error FROM {table}"
            f" WHERE {scope} AND {stage}_status = 'failed' ORDER BY {key}"
        ).fetchall()
        return [Failure(r[0], r[1] or "error", r[2] or "") for r in rows]

    # --- episodes -------------------------------------------------------------------------------
    def episode(self, episode_id: str) -> Episode | None:
        row = self.conn.execute("SELECT * FROM episodes WHERE episode_id = ?", (episode_id,)).fetchone()
        return None if row is None else Episode.from_row(row)

    def add_episode(self, source: EpisodeSource) -> None:
        self.conn.execute(
            "INSERT INTO episodes(episode_id, url, source_kind, manifest, extra, added_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                source.episode_id,
                source.url,
                source.source_kind,
                source.manifest,
                json.dumps(source.extra, sort_keys=True),
                now(),
            ),
        )

    def episodes(self, where: str = "1", params: Iterable[Any] = ()) -> list[Episode]:
        """Every episode, or an ad hoc filter (tests and tools; the stages use the named queries)."""
        rows = self.conn.execute(f"SELECT * FROM episodes WHERE {where} ORDER BY episode_id", tuple(params))
        return [Episode.from_row(r) for r in rows]

    def episodes_fetched(self) -> list[Episode]:
        return self.episodes("fetch_status = 'done'")

    def episodes_to_segment(self, statuses: Iterable[Status]) -> list[Episode]:
        """Fetched episodes whose segment status is one of `statuses`."""
        wanted = [Status(s).value for s in statuses]
        marks = ", ".join("?" for _ in wanted)
        return self.episodes(f"fetch_status = 'done' AND segment_status IN ({marks})", wanted)

    def episodes_segmented(self) -> list[Episode]:
        return self.episodes("segment_status = 'done'")

    def mark_fetched(self, episode_id: str, *, path: str, size: int, sha256: str, downloader: str,
                     probe: dict[str, Any], attempts: int) -> None:  # fmt: skip
        self.conn.execute(
            "UPDATE episodes SET fetch_status = 'done', fetch_error_kind = NULL, fetch_error = NULL,"
            " fetch_attempts = fetch_attempts + ?, fetched_at = ?, path = ?, size = ?, sha256 = ?,"
            " downloader = ?, probe = ? WHERE episode_id = ?",
            (attempts, now(), path, size, sha256, downloader, json.dumps(probe, sort_keys=True), episode_id),
        )

    def mark_fetch_failed(self, episode_id: str, *, kind: str, error: str, attempts: int) -> None:
        self.conn.execute(
            "UPDATE episodes SET fetch_status = 'failed', fetch_error_kind = ?, fetch_error = ?,"
            " fetch_attempts = fetch_attempts + ? WHERE episode_id = ?",
            (kind, error, attempts, episode_id),
        )

    # --- segmentation -----------------------------------------------------------------------
    def save_segmentation(self, episode_id: str, clips: list[dict[str, Any]], config: dict[str, Any]) -> None:
        """Replace an episode's clips and mark it segmented, in one transaction."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM clips WHERE episode_id = ?", (episode_id,))
            for clip in clips:
                columns = ", ".join(clip)
                marks = ", ".join("?" for _ in clip)
                conn.execute(f"INSERT INTO clips({columns}) VALUES ({marks})", tuple(clip.values()))
            conn.execute(
                "UPDATE episodes SET segment_status = 'done', segment_error_kind = NULL,"
                " segment_error = NULL, segmented_at = ?, segment_config = ?,"
                " segment_attempts = segment_attempts + 1 WHERE episode_id = ?",
                (now(), json.dumps(config, sort_keys=True), episode_id),
            )

    def mark_segment_failed(self, episode_id: str, *, status: str, kind: str, error: str) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM clips WHERE episode_id = ?", (episode_id,))
            conn.execute(
                "UPDATE episodes SET segment_status = ?, segment_error_kind = ?, segment_error = ?,"
                " segmented_at = ?, segment_attempts = segment_attempts + 1 WHERE episode_id = ?",
                (Status(status).value, kind, error, now(), episode_id),
            )

    def clips_in_use(self, episode_id: str) -> int:
        """How many of an episode's clips people (review) or shards depend on."""
        (n,) = self.conn.execute(
            "SELECT COUNT(*) FROM clips WHERE episode_id = ? AND (review IS NOT NULL OR shard IS NOT NULL)",
            (episode_id,),
        ).fetchone()
        return int(n)

    # --- clips ----------------------------------------------------------------------------------
    def clips(self, where: str = "1", params: Iterable[Any] = ()) -> list[Clip]:
        """Every clip, or an ad hoc filter (tests and tools; the stages use the named queries)."""
        rows = self.conn.execute(
            f"SELECT * FROM clips WHERE {where} ORDER BY episode_id, clip_index", tuple(params)
        )
        return [Clip.from_row(r) for r in rows]

    def clip(self, clip_id: str) -> Clip | None:
        row = self.conn.execute("SELECT * FROM clips WHERE clip_id = ?", (clip_id,)).fetchone()
        return None if row is None else Clip.from_row(row)

    def clips_to_flag(self, *, retry_failed: bool, redo: bool) -> list[Clip]:
        if redo:
            return self.clips("status = 'ok'")
        statuses = "('pending', 'failed')" if retry_failed else "('pending')"
        return self.clips(f"status = 'ok' AND flag_status IN {statuses}")

    def clips_to_mask(self, *, include_unreviewed: bool, retry_failed: bool) -> list[Clip]:
        """Clips mask should prepare: usable ones (or only accepted ones) not prepared yet."""
        chosen = _USABLE if include_unreviewed else _REVIEWED
        statuses = "('pending', 'failed')" if retry_failed else "('pending')"
        return self.clips(f"{chosen} AND mask_status IN {statuses}")

    def episode_footage(self, episode_ids: Iterable[str]) -> dict[str, list[Clip]]:
        """Each episode's usable clips, whatever their review: what the episode's set looks like."""
        out: dict[str, list[Clip]] = {e: [] for e in episode_ids}
        for clip in self.clips("status = 'ok'"):
            if clip.episode_id in out:
                out[clip.episode_id].append(clip)
        return out

    def clips_prepared(self, *, unsharded: bool = False, episode_id: str | None = None) -> list[Clip]:
        """Usable clips mask has prepared: what shard packs."""
        where = f"{_USABLE} AND mask_status = 'done'" + (" AND shard IS NULL" if unsharded else "")
        if episode_id is None:
            return self.clips(where)
        return self.clips(f"{where} AND episode_id = ?", (episode_id,))

    def count_sharded(self) -> int:
        (n,) = self.conn.execute("SELECT COUNT(*) FROM clips WHERE shard IS NOT NULL").fetchone()
        return int(n)

    def sharded_then_rejected(self) -> list[str]:
        """Clips in a shard that review rejected later: shards are never rewritten, the loader skips them."""
        rows = self.conn.execute(
            "SELECT clip_id FROM clips WHERE shard IS NOT NULL AND review = 'rejected' ORDER BY clip_id"
        )
        return [r[0] for r in rows]

    def shard_mask_configs(self) -> dict[str, list[dict[str, Any]]]:
        """For each shard, the distinct mask settings its clips were prepared with."""
        rows = self.conn.execute(
            "SELECT shard, mask_config FROM clips WHERE shard IS NOT NULL GROUP BY shard, mask_config"
            " ORDER BY shard, mask_config"
        )
        out: dict[str, list[dict[str, Any]]] = {}
        for shard, config in rows:
            out.setdefault(shard, []).append(json.loads(config) if config else {})
        return out

    # --- mask -----------------------------------------------------------------------------------
    def mark_prepared(self, clip_id: str, *, prepared_path: str, out_frames: int, masked_frames: int,
                      masked_fraction: float, mask_config: dict[str, Any] | None = None) -> None:  # fmt: skip
        self.conn.execute(
            "UPDATE clips SET mask_status = 'done', mask_error_kind = NULL, mask_error = NULL,"
            " prepared_path = ?, out_frames = ?, masked_frames = ?, masked_fraction = ?,"
            " mask_config = ?, mask_attempts = mask_attempts + 1 WHERE clip_id = ?",
            (prepared_path, out_frames, masked_frames, masked_fraction,
             None if mask_config is None else json.dumps(mask_config, sort_keys=True), clip_id),
        )  # fmt: skip

    def mark_mask_failed(self, clip_id: str, *, kind: str, error: str) -> None:
        self.conn.execute(
            "UPDATE clips SET mask_status = 'failed', mask_error_kind = ?, mask_error = ?,"
            " mask_attempts = mask_attempts + 1 WHERE clip_id = ?",
            (kind, error, clip_id),
        )

    # --- flags ----------------------------------------------------------------------------------
    FLAG_COLUMNS = (
        "flag_no_face",
        "flag_many_faces",
        "flag_cut",
        "flag_overlay",
        "flag_silence",
        "flag_small_face",
        "flag_no_speech",
        "flag_low_speech",
    )

    def mark_flagged(
        self,
        clip_id: str,
        *,
        faces: int,
        raised: dict[str, bool],
        face_height: float | None = None,
        speech_ratio: float | None = None,
    ) -> None:
        """Store a clip's automatic pre-flags; `raised` maps each of FLAG_COLUMNS to a bool."""
        assert set(raised) == set(self.FLAG_COLUMNS), raised
        names = ",".join(c.removeprefix("flag_") for c in self.FLAG_COLUMNS if raised[c])
        sets = ", ".join(f"{c} = ?" for c in self.FLAG_COLUMNS)
        self.conn.execute(
            f"UPDATE clips SET flag_status = 'done', flag_error_kind = NULL, flag_error = NULL, faces = ?,"
            f" {sets}, flags = ?, face_height = ?, speech_ratio = ?, flag_attempts = flag_attempts + 1"
            " WHERE clip_id = ?",
            (faces, *(int(raised[c]) for c in self.FLAG_COLUMNS), names, face_height, speech_ratio, clip_id),
        )

    def overlay_flagged(self) -> list[Clip]:
        """Usable clips whose overlay flag is raised."""
        return self.clips("status = 'ok' AND flag_status = 'done' AND flag_overlay = 1")

    def lower_overlay_flags(self, clip_ids: Iterable[str]) -> None:
        """Lower the overlay flag of these clips (what it found is the set), keeping `flags` in step."""
        with self.transaction():
            for clip_id in clip_ids:
                row = self.conn.execute(
                    f"SELECT {', '.join(self.FLAG_COLUMNS)} FROM clips WHERE clip_id = ?", (clip_id,)
                ).fetchone()
                raised = dict(zip(self.FLAG_COLUMNS, row, strict=True)) | {"flag_overlay": 0}
                names = ",".join(c.removeprefix("flag_") for c in self.FLAG_COLUMNS if raised[c])
                self.conn.execute(
                    "UPDATE clips SET flag_overlay = 0, flags = ? WHERE clip_id = ?", (names, clip_id)
                )

    def mark_flag_failed(self, clip_id: str, *, kind: str, error: str) -> None:
        self.conn.execute(
            "UPDATE clips SET flag_status = 'failed', flag_error_kind = ?, flag_error = ?,"
            " flag_attempts = flag_attempts + 1 WHERE clip_id = ?",
            (kind, error, clip_id),
        )

    # --- shard ----------------------------------------------------------------------------------
    def assign_episode_indices(self, episode_ids: Iterable[str]) -> None:
        """Give each episode without one the next free embedding index; existing ones never change."""
        with self.transaction() as conn:
            (top,) = conn.execute("SELECT COALESCE(MAX(episode_index), -1) FROM episodes").fetchone()
            for episode_id in sorted(set(episode_ids)):
                row = conn.execute(
                    "SELECT episode_index FROM episodes WHERE episode_id = ?", (episode_id,)
                ).fetchone()
                if row is not None and row[0] is None:
                    top += 1
                    conn.execute(
                        "UPDATE episodes SET episode_index = ? WHERE episode_id = ?", (top, episode_id)
                    )

    def episodes_indexed(self) -> list[Episode]:
        """Episodes with an embedding index, in index order."""
        rows = self.conn.execute(
            "SELECT * FROM episodes WHERE episode_index IS NOT NULL ORDER BY episode_index"
        )
        return [Episode.from_row(r) for r in rows]

    def set_splits(self, splits: dict[str, str]) -> None:
        with self.transaction() as conn:
            conn.executemany(
                "UPDATE clips SET split = ? WHERE clip_id = ? AND split IS NULL",
                [(split, clip_id) for clip_id, split in splits.items()],
            )

    def record_shard(self, name: str, split: str, clip_ids: list[str], size: int, sha256: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO shards(name, split, samples, bytes, sha256, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (name, split, len(clip_ids), size, sha256, now()),
            )
            conn.executemany("UPDATE clips SET shard = ? WHERE clip_id = ?", [(name, c) for c in clip_ids])

    def shards(self) -> list[Shard]:
        return [Shard.from_row(r) for r in self.conn.execute("SELECT * FROM shards ORDER BY split, name")]

    # --- review --------------------------------------------------------------------------------
    REVIEW_FILTERS: ClassVar[dict[str, str]] = {
        "unreviewed": "review IS NULL",
        "flagged": "flags IS NOT NULL AND flags != ''",
        "rejected": "review = 'rejected'",
        "all": "1",
    }
    DECISION_COLUMNS = ("review", "review_reason", "review_note", "reviewer", "reviewed_at")

    REPORT_COLUMNS = (
        "clip_id", "episode_id", "status", "reason", "duration", "review", "review_reason", "split",
        "flag_status", "flags", "masked_fraction", "speech_ratio",
    )  # fmt: skip

    def report_rows(self) -> list[sqlite3.Row]:
        """What `nwt-data report` counts, for every clip (plain rows: fast for 100,000 clips)."""
        return self.conn.execute(
            f"SELECT {', '.join(self.REPORT_COLUMNS)} FROM clips ORDER BY episode_id, clip_index"
        ).fetchall()

    def review_queue(self, filter: str, *, flagged_first: bool = False, flag: str | None = None) -> list[str]:
        """Clip ids of the kept clips in `filter` (see REVIEW_FILTERS), in review order; with `flag`,
        only those that raised that automatic flag."""
        order = ("(flags IS NULL OR flags = ''), " if flagged_first else "") + "episode_id, clip_index"
        chosen = self.REVIEW_FILTERS[filter]
        extra, params = ("", ()) if flag is None else (" AND (',' || flags || ',') LIKE ?", (f"%,{flag},%",))
        rows = self.conn.execute(
            f"SELECT clip_id FROM clips WHERE status = 'ok' AND {chosen}{extra} ORDER BY {order}", params
        )
        return [r[0] for r in rows]

    def record_decision(self, clip_id: str, review: str | None, reason: str | None, note: str | None,
                        reviewer: str, at: str | None = None, *,
                        skip_same: bool = False) -> bool:  # fmt: skip
        """Set a clip's decision and log it with what it replaces, in one transaction; False: no such clip.

        With `skip_same`, a decision already in place (same review, reason, note and reviewer, and the
        same time when `at` is given) is left as it is and not logged again: importing a file twice,
        or again after a killed import, changes nothing the first import did.
        """
        with self.transaction() as conn:
            row = conn.execute(
                f"SELECT {', '.join(self.DECISION_COLUMNS)} FROM clips WHERE clip_id = ?", (clip_id,)
            ).fetchone()
            if row is None:
                return False
            current = dict(zip(self.DECISION_COLUMNS, row, strict=True))
            wanted = {"review": review, "review_reason": reason, "review_note": note, "reviewer": reviewer}
            in_place = all(current[k] == v for k, v in wanted.items())
            if skip_same and in_place and (at is None or current["reviewed_at"] == at):
                return True
            at = at or now()
            self._set_decision(clip_id, (review, reason, note, reviewer, at))
            conn.execute(
                "INSERT INTO review_log(clip_id, review, review_reason, review_note, reviewer, at, previous)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (clip_id, review, reason, note, reviewer, at,
                 json.dumps(dict(zip(self.DECISION_COLUMNS, row, strict=True)))),
            )  # fmt: skip
        return True

    def _set_decision(self, clip_id: str, values: tuple[Any, ...]) -> None:
        self.conn.execute(
            "UPDATE clips SET review = ?, review_reason = ?, review_note = ?, reviewer = ?, reviewed_at = ?"
            " WHERE clip_id = ?",
            (*values, clip_id),
        )

    def last_decision(self, reviewer: str) -> ReviewEntry | None:
        """`reviewer`'s latest decision still in place (call inside a transaction to undo it)."""
        row = self.conn.execute(
            "SELECT entry_id, clip_id, review, previous FROM review_log WHERE reviewer = ? AND undone = 0"
            " AND review IS NOT NULL ORDER BY entry_id DESC LIMIT 1",
            (reviewer,),
        ).fetchone()
        return None if row is None else ReviewEntry(row[0], row[1], row[2], json.loads(row[3]))

    def undo_decision(self, entry: ReviewEntry) -> None:
        """Put back the decision `entry` replaced, and mark the entry undone."""
        self._set_decision(entry.clip_id, tuple(entry.previous[c] for c in self.DECISION_COLUMNS))
        self.conn.execute("UPDATE review_log SET undone = 1 WHERE entry_id = ?", (entry.entry_id,))

    def decisions(self, fields: Iterable[str]) -> list[dict[str, Any]]:
        """Every decided clip's `fields` (columns of clips), by clip id."""
        fields = list(fields)
        assert set(fields) <= {"clip_id", *self.DECISION_COLUMNS}, fields
        rows = self.conn.execute(
            f"SELECT {', '.join(fields)} FROM clips WHERE review IS NOT NULL ORDER BY clip_id"
        )
        return [dict(zip(fields, r, strict=True)) for r in rows]

    def unreviewed_unflagged(self) -> list[str]:
        """Kept clips nobody reviewed whose automatic pre-flags raised nothing."""
        rows = self.conn.execute(
            "SELECT clip_id FROM clips WHERE status = 'ok' AND review IS NULL AND flag_status = 'done'"
            " AND flags = '' ORDER BY clip_id"
        )
        return [r[0] for r in rows]

    def review_counts(self) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT COALESCE(review, 'unreviewed'), COUNT(*) FROM clips WHERE status = 'ok' GROUP BY 1"
        )
        return {str(k): int(n) for k, n in rows}

    # --- status --------------------------------------------------------------------------------
    def counts(self, table: str, column: str) -> dict[str, int]:
        assert table in ("episodes", "clips")
        rows = self.conn.execute(f"SELECT {column} AS k, COUNT(*) AS n FROM {table} GROUP BY {column}")
        return {str(r["k"]): int(r["n"]) for r in rows}

    def stage_counts(self) -> dict[str, dict[str, int]]:
        """Per-stage counts for `nwt-data status`: episodes by fetch and segment status, clips by stage."""
        review = self.review_counts()
        fetch = self.counts("episodes", "fetch_status")
        fetch.pop("failed", None)
        for kind, n in self.conn.execute(
            "SELECT fetch_error_kind, COUNT(*) FROM episodes WHERE fetch_status = 'failed' GROUP BY 1"
        ):
            fetch[f"failed ({kind})"] = int(n)
        mask = self.conn.execute(f"SELECT mask_status, COUNT(*) FROM clips WHERE {_USABLE} GROUP BY 1")
        shard = self.conn.execute("SELECT split, COUNT(*) FROM clips WHERE shard IS NOT NULL GROUP BY 1")
        return {
            "fetch (episodes)": fetch,
            "segment (episodes)": self.counts("episodes", "segment_status"),
            "clips": self.counts("clips", "status"),
            "review (usable clips)": review,
            "mask (usable clips)": {str(k): int(n) for k, n in mask},
            "shard (clips)": {str(k): int(n) for k, n in shard},
        }
