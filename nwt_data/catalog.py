"""The workspace catalog: an embedded SQLite database, the single truth about what is done.

One row per episode and per clip. A stage marks an item done only after its files are durable
(written under a temporary name, then renamed), and it writes an item's rows in one transaction, so a
run killed at any moment leaves the catalog consistent. Only the main process of a command writes;
workers return values. WAL mode lets `status` and the review app read while a stage writes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

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
    prepared_path   TEXT,                      -- folder with video.mp4, audio.npy, mel.npy
    out_frames      INTEGER,                   -- frames at 30 FPS: round(duration * 30)
    masked_frames   INTEGER,                   -- output frames with at least one painted box
    masked_fraction REAL,                      -- mean painted share of the frame area
    split           TEXT,                      -- train | val | test, fixed once assigned
    shard           TEXT,                      -- the shard that holds the clip
    flag_status     TEXT NOT NULL DEFAULT 'pending',  -- pending | done | failed (automatic pre-flags)
    flag_error      TEXT,
    faces           INTEGER,                   -- median faces found in sampled frames
    flag_no_face    INTEGER,                   -- no face, or more than one face
    flag_many_faces INTEGER,
    flag_cut        INTEGER,                   -- a shot cut or title transition inside the clip
    flag_overlay    INTEGER,                   -- the mask heuristic found an overlay box
    flag_silence    INTEGER,                   -- no speech energy in the audio
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
    summary     TEXT                           -- per-status counts, JSON
);
"""


# Created after older workspaces got their missing columns.
INDEXES = """
CREATE INDEX IF NOT EXISTS clips_by_episode ON clips(episode_id);
CREATE UNIQUE INDEX IF NOT EXISTS episodes_by_index ON episodes(episode_index);
"""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class EpisodeSource:
    episode_id: str
    url: str
    source_kind: str  # 'url' | 'file'
    manifest: str | None
    extra: dict[str, str]


class Catalog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.executescript(SCHEMA)
        self._add_missing_columns()
        self.conn.executescript(INDEXES)
        self.conn.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
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
            "INSERT INTO runs(command, config, nwt_version, started_at) VALUES (?, ?, ?, ?)",
            (command, json.dumps(config, sort_keys=True), __version__, now()),
        )
        return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, summary: dict[str, Any]) -> None:
        self.conn.execute(
            "UPDATE runs SET finished_at = ?, summary = ? WHERE run_id = ?",
            (now(), json.dumps(summary, sort_keys=True), run_id),
        )

    # --- episodes -------------------------------------------------------------------------------
    def episode(self, episode_id: str) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM episodes WHERE episode_id = ?", (episode_id,)).fetchone()

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

    def episodes(self, where: str = "1", params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return self.conn.execute(
            f"SELECT * FROM episodes WHERE {where} ORDER BY episode_id", tuple(params)
        ).fetchall()

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
                " segment_error = NULL, segmented_at = ?, segment_config = ? WHERE episode_id = ?",
                (now(), json.dumps(config, sort_keys=True), episode_id),
            )

    def mark_segment_failed(self, episode_id: str, *, status: str, kind: str, error: str) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM clips WHERE episode_id = ?", (episode_id,))
            conn.execute(
                "UPDATE episodes SET segment_status = ?, segment_error_kind = ?, segment_error = ?,"
                " segmented_at = ? WHERE episode_id = ?",
                (status, kind, error, now(), episode_id),
            )

    # --- mask -----------------------------------------------------------------------------------
    def mark_prepared(self, clip_id: str, *, prepared_path: str, out_frames: int, masked_frames: int,
                      masked_fraction: float) -> None:  # fmt: skip
        self.conn.execute(
            "UPDATE clips SET mask_status = 'done', mask_error_kind = NULL, mask_error = NULL,"
            " prepared_path = ?, out_frames = ?, masked_frames = ?, masked_fraction = ? WHERE clip_id = ?",
            (prepared_path, out_frames, masked_frames, masked_fraction, clip_id),
        )

    def mark_mask_failed(self, clip_id: str, *, kind: str, error: str) -> None:
        self.conn.execute(
            "UPDATE clips SET mask_status = 'failed', mask_error_kind = ?, mask_error = ? WHERE clip_id = ?",
            (kind, error, clip_id),
        )

    # --- flags ----------------------------------------------------------------------------------
    FLAG_COLUMNS = ("flag_no_face", "flag_many_faces", "flag_cut", "flag_overlay", "flag_silence")

    def mark_flagged(self, clip_id: str, *, faces: int, raised: dict[str, bool]) -> None:
        """Store a clip's automatic pre-flags; `raised` maps each of FLAG_COLUMNS to a bool."""
        assert set(raised) == set(self.FLAG_COLUMNS), raised
        names = ",".join(c.removeprefix("flag_") for c in self.FLAG_COLUMNS if raised[c])
        sets = ", ".join(f"{c} = ?" for c in self.FLAG_COLUMNS)
        self.conn.execute(
            f"UPDATE clips SET flag_status = 'done', flag_error = NULL, faces = ?, {sets}, flags = ?"
            " WHERE clip_id = ?",
            (faces, *(int(raised[c]) for c in self.FLAG_COLUMNS), names, clip_id),
        )

    def mark_flag_failed(self, clip_id: str, *, error: str) -> None:
        self.conn.execute(
            "UPDATE clips SET flag_status = 'failed', flag_error = ? WHERE clip_id = ?", (error, clip_id)
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

    def shards(self) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM shards ORDER BY split, name").fetchall()

    def clips(self, where: str = "1", params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return self.conn.execute(
            f"SELECT * FROM clips WHERE {where} ORDER BY episode_id, clip_index", tuple(params)
        ).fetchall()

    # --- status --------------------------------------------------------------------------------
    def counts(self, table: str, column: str) -> dict[str, int]:
        assert table in ("episodes", "clips")
        rows = self.conn.execute(f"SELECT {column} AS k, COUNT(*) AS n FROM {table} GROUP BY {column}")
        return {str(r["k"]): int(r["n"]) for r in rows}
