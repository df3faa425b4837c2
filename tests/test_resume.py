"""`kill -9` of `nwt-data fetch` and `nwt-data segment` at random moments, then resume.

The issue's requirement: a test that kills `fetch` and `segment` with SIGKILL at random points,
resumes, and gets the same catalog and files as an uninterrupted run, with nothing duplicated or lost.

Everything is real: generated H.264/AAC episodes (ffmpeg), yt-dlp downloading over HTTP from a server
on 127.0.0.1, local copies, ffmpeg's segment muxer, the SQLite catalog, and `nwt-data` running as its
own process. The server sends slowly, in small chunks, so kills land in the middle of downloads; it
honours Range requests for some files (yt-dlp resumes its `.part` file) and ignores them for another
(yt-dlp starts that download over). The killing and the workspace readers are in sigkill.py.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sigkill import (
    count_where,
    files_under,
    hashes,
    hidden_entries,
    kill_repeatedly,
    read_runs,
    read_table,
    row_differences,
    run_to_end,
    size_of,
)

pytestmark = pytest.mark.slow

# replace_dir()'s name for the clip folder it is replacing.
TRASH = re.compile(r"\.[A-Za-z0-9][A-Za-z0-9_-]*\.old-[0-9a-f]{8}")

SEED = int(os.environ.get("NWT_RESUME_SEED", "20240531"))
KILLS_PER_STAGE = 8


@dataclass(frozen=True)
class Episode:
    name: str
    seconds: float
    fps: str
    gop: int
    source: str  # 'http' (Range honoured), 'http-norange' (whole file every time) or 'file'


EPISODES = (
    Episode("http-30fps", 8.0, "30", 30, "http"),
    Episode("http-25fps", 10.0, "25", 50, "http"),
    Episode("http-ntsc-norange", 7.0, "30000/1001", 45, "http-norange"),
    Episode("file-24fps-long", 60.0, "24", 48, "file"),
    Episode("file-50fps", 40.0, "50", 100, "file"),
    Episode("file-30fps-short", 6.0, "30", 60, "file"),
    Episode("file-25fps", 20.0, "25", 25, "file"),
    Episode("file-60fps", 15.0, "60", 120, "file"),
    Episode("file-ntsc", 20.0, "30000/1001", 60, "file"),
)


# --- a slow HTTP server ------------------------------------------------------------------------------
class _SlowHandler(SimpleHTTPRequestHandler):
    """Serves files in small chunks with pauses; answers Range requests unless the name says norange."""

    chunk = 16 * 1024
    pause = 0.03  # about 0.5 MB/s per connection

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        size = path.stat().st_size
        start, end = 0, size - 1
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", "").strip())
        ranged = match is not None and "norange" not in path.name
        if ranged and match is not None:
            start = int(match[1])
            end = min(int(match[2]), size - 1) if match[2] else size - 1
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.end_headers()
                return
        self.send_response(206 if ranged else 200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Accept-Ranges", "none" if "norange" in path.name else "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if ranged:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        with open(path, "rb") as f, contextlib.suppress(OSError):  # clients hang up; that is fine
            f.seek(start)
            left = end - start + 1
            while left > 0:
                data = f.read(min(self.chunk, left))
                if not data:
                    break
                self.wfile.write(data)
                left -= len(data)
                time.sleep(self.pause)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass


@contextlib.contextmanager
def slow_server(folder: Path) -> Iterator[str]:
    server = _QuietServer(("127.0.0.1", 0), functools.partial(_SlowHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def fetch_progress(ws: Path) -> tuple[int, ...]:
    """Episodes marked fetched, episode files not yet marked, and bytes of downloads and copies under way."""
    done = count_where(ws, "SELECT COUNT(*) FROM episodes WHERE fetch_status = 'done'")
    on_disk = len(list((ws / "episodes").glob("*.mp4"))) if (ws / "episodes").is_dir() else 0
    work = files_under(ws / "tmp" / "fetch") if (ws / "tmp" / "fetch").is_dir() else []
    return done, on_disk - done, sum(size_of(p) for p in work)


def segment_progress(ws: Path) -> tuple[int, ...]:
    """Episodes marked segmented, clip folders not yet marked, and files of segmentations under way."""
    done = count_where(ws, "SELECT COUNT(*) FROM episodes WHERE segment_status = 'done'")
    folders = [p for p in (ws / "clips").iterdir() if not p.name.startswith(".")]
    work = [f for p in (ws / "tmp").glob("segment-*") for f in files_under(p)]
    return done, len(folders) - done, len(work)


# --- the test ----------------------------------------------------------------------------------------------
def test_sigkill_at_random_points_then_resume_matches_an_uninterrupted_run(
    tmp_path: Path, make_video: Callable[..., Path]
) -> None:
    started = time.monotonic()
    served, local = tmp_path / "served", tmp_path / "local"
    for episode in EPISODES:
        folder = served if episode.source.startswith("http") else local
        make_video(
            f"{episode.name}.mp4", seconds=episode.seconds, fps=episode.fps, gop=episode.gop, folder=folder
        )
    rng = random.Random(SEED)
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    logs = tmp_path / "logs"
    logs.mkdir()

    with slow_server(served) as base_url:
        # One manifest for both workspaces, so URLs, paths and the manifest column are the same.
        manifest = tmp_path / "manifest.csv"
        lines = ["episode_id,url,title"]
        for episode in EPISODES:
            where = (
                f"local/{episode.name}.mp4" if episode.source == "file" else f"{base_url}/{episode.name}.mp4"
            )
            lines.append(f"{episode.name},{where},{episode.fps} fps {episode.source}")
        manifest.write_text("\n".join(lines) + "\n")
        fetch = ["fetch", str(manifest), "--workers", "2"]
        segment = ["segment", "--workers", "2"]

        # The uninterrupted run.
        ref_fetch = run_to_end(
            [*fetch, "-w", str(reference)], logs / "reference.log", lambda: fetch_progress(reference)
        )
        ref_fetched = read_table(reference, "episodes", "episode_id")
        ref_segment = run_to_end(
            [*segment, "-w", str(reference)], logs / "reference.log", lambda: segment_progress(reference)
        )

        # The interrupted runs, each stage killed again and again, then left to finish.
        fetch_kills = kill_repeatedly(
            [*fetch, "-w", str(resumed)],
            logs / "fetch.log",
            rng,
            ref_fetch,
            lambda: fetch_progress(resumed),
            KILLS_PER_STAGE,
        )
        run_to_end([*fetch, "-w", str(resumed)], logs / "fetch.log", lambda: fetch_progress(resumed))
        fetched = read_table(resumed, "episodes", "episode_id")
        segment_kills = kill_repeatedly(
            [*segment, "-w", str(resumed)],
            logs / "segment.log",
            rng,
            ref_segment,
            lambda: segment_progress(resumed),
            KILLS_PER_STAGE,
        )
        run_to_end([*segment, "-w", str(resumed)], logs / "segment.log", lambda: segment_progress(resumed))

    summary = (
        f"seed {SEED}; reference fetch {ref_fetch.total:.2f} s ({ref_fetch.work:.2f} s working),"
        f" segment {ref_segment.total:.2f} s ({ref_segment.work:.2f} s working);"
        f" fetch kills ({fetch_kills.mid_work} mid-work): {fetch_kills.describe()};"
        f" segment kills ({segment_kills.mid_work} mid-work): {segment_kills.describe()};"
        f" {time.monotonic() - started:.1f} s in all"
    )
    print(summary)

    # The reference run did what the test is about: every episode fetched and split into clips.
    episodes = read_table(reference, "episodes", "episode_id")
    assert [e["episode_id"] for e in episodes] == sorted(e.name for e in EPISODES)
    assert all(e["fetch_status"] == "done" and e["segment_status"] == "done" for e in episodes), episodes
    assert {e["downloader"].split()[0] for e in episodes} == {"yt-dlp", "copy"}
    clips = read_table(reference, "clips", "clip_id")
    assert len(clips) >= 2 * len(EPISODES)
    assert {c["status"] for c in clips} >= {"ok", "too_short"}

    # Same catalog, after fetch and after segment.
    assert fetched == ref_fetched, row_differences(ref_fetched, fetched, "episode_id")
    resumed_episodes = read_table(resumed, "episodes", "episode_id")
    assert resumed_episodes == episodes, row_differences(episodes, resumed_episodes, "episode_id")
    resumed_clips = read_table(resumed, "clips", "clip_id")
    assert resumed_clips == clips, row_differences(clips, resumed_clips, "clip_id")

    # Same files, byte for byte.
    assert hashes(resumed, "episodes", "clips") == hashes(reference, "episodes", "clips")

    killed = {reference: 0, resumed: sum(k.killed for k in fetch_kills.kills + segment_kills.kills)}
    for ws in (reference, resumed):
        # Nothing duplicated or lost: one row per clip file and one file per clip row.
        rows = read_table(ws, "clips", "clip_id")
        paths = [c["path"] for c in rows]
        assert len(paths) == len(set(paths))
        assert sorted(paths) == sorted(hashes(ws, "clips"))
        for episode in episodes:
            indexes = [c["clip_index"] for c in rows if c["episode_id"] == episode["episode_id"]]
            assert indexes == list(range(len(indexes))), (episode["episode_id"], indexes)
        names = sorted(p.name for p in (ws / "episodes").iterdir())
        assert names == [f"{e['episode_id']}.mp4" for e in episodes]

        # No work in progress left once a run has finished: no temp files anywhere in the workspace.
        assert files_under(ws / "tmp") == []
        assert not list((ws / "tmp").glob("segment-*"))
        # Only a run killed inside replace_dir() may leave a clip folder behind, under a hidden name.
        hidden = hidden_entries(ws / "clips")
        assert [name for name in hidden if not TRASH.fullmatch(name.split("/")[0])] == []

        # Killed runs that got as far as the catalog are on record as unfinished; the last ones finished.
        runs = read_runs(ws)
        for command in ("fetch", "segment"):
            assert [r for r in runs if r["command"] == command][-1]["finished_at"], runs
        assert sum(r["finished_at"] is None for r in runs) <= killed[ws], runs

    # And the kills really interrupted work, in both stages (else this test proves little).
    assert fetch_kills.mid_work >= 2, summary
    assert segment_kills.mid_work >= 2, summary
