"""SIGKILL of `nwt-data flag`, `mask`, `shard` and `review --import` at random moments, then rerun.

Extends test_resume.py (fetch, segment) to the stages that follow: each is killed mid-work at least
twice (mask and shard also the moment a temporary folder or shard file is on disk), rerun to the end
and compared with an uninterrupted run of the same stage on a copy of the same workspace: catalog
rows, sha256 of prepared clips, shards and dataset.json, the samples the shards hold, the review log,
and no temporary file left. The killing is sigkill.py's (shared with test_resume.py);
`NWT_RESUME_SEED` picks the moments. The media are tiny (two 9 s episodes, six 2.5 s clips) and mask
uses the paper's overlay rule (no text detector), so the whole file costs seconds, not minutes.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import resource
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sigkill import (
    Interrupted,
    Timing,
    count_where,
    files_under,
    hashes,
    hidden_entries,
    kill_repeatedly,
    read_table,
    row_differences,
)

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("NWT_RESUME_SEED", "20240531"))
KILLS = 3  # at most, per stage; it stops once two landed while the stage was working
FIGURES: dict[str, str] = {}


def _in_process(cli: Callable[..., Any], *args: Any, items: int = 1) -> Timing:
    """Run `nwt-data ARGS` in this process (no start-up cost); it must succeed. The timing's `work`
    is the time of one of its `items`: kill_repeatedly's random delay after a change of the
    workspace is then a fraction of one item, and the kills land among the first items."""
    start = time.monotonic()
    result = cli(*args)
    assert result.exit_code == 0, result.output
    seconds = time.monotonic() - start
    return Timing(seconds, seconds / items)


def _cpu() -> float:
    """CPU seconds of this process and its finished children (wall time on a busy machine misleads)."""
    return sum(
        u.ru_utime + u.ru_stime
        for u in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    )


def _record(stage: str, kills: Interrupted, started: tuple[float, float]) -> None:
    FIGURES[stage] = (
        f"{sum(k.killed for k in kills.kills)} kills, {kills.mid_work} mid-work,"
        f" {kills.left_temp} left a temporary file, {time.monotonic() - started[0]:.1f} s"
        f" ({_cpu() - started[1]:.1f} CPU-s): {kills.describe()}"
    )


def _no_work_left(ws: Path) -> None:
    """Nothing in progress once a run has finished: no file in tmp/, no hidden file or folder."""
    assert files_under(ws / "tmp") == [] and list((ws / "tmp").glob("mask-*")) == []
    for folder in ("clips", "prepared", "shards"):
        assert hidden_entries(ws / folder) == [], folder


# --- the pipeline stages: flag, mask, shard ------------------------------------------------------
def _flag_progress(ws: Path) -> tuple[int, ...]:
    return (count_where(ws, "SELECT COUNT(*) FROM clips WHERE flag_status = 'done'"),)


# Progress counts only what the catalog marks done: a kill 'after progress' then lands in the next
# item's work, not in the start-up's clearing of what the last killed run left.
def _mask_progress(ws: Path) -> tuple[int, ...]:
    return (count_where(ws, "SELECT COUNT(*) FROM clips WHERE mask_status = 'done'"),)


def _mask_writing(ws: Path) -> frozenset[str]:
    """The clip folders being prepared (tmp/mask-*)."""
    return frozenset(p.name for p in (ws / "tmp").glob("mask-*"))


def _shard_progress(ws: Path) -> tuple[int, ...]:
    return (count_where(ws, "SELECT COUNT(*) FROM shards"),)


def _shard_writing(ws: Path) -> frozenset[str]:
    """Shards (.NAME.partial) and dataset.json (.dataset.json.*.tmp) being written."""
    return frozenset(hidden_entries(ws / "shards"))


def _samples(ws: Path) -> dict[str, list[tuple[str, ...]]]:
    """Every shard's samples as webdataset reads them back: (key, member names...) in order."""
    import webdataset as wds

    out = {}
    for tar in sorted((ws / "shards").glob("*.tar")):
        out[tar.name] = [
            (s["__key__"], *sorted(k for k in s if not k.startswith("__")))
            for s in wds.WebDataset(str(tar), shardshuffle=False)
        ]
    return out


def test_sigkill_of_flag_mask_and_shard_then_rerun_matches(
    tmp_path: Path, make_video: Callable[..., Path], cli: Callable[..., Any]
) -> None:
    started = time.monotonic(), _cpu()
    lines = ["episode_id,url"]
    for name in ("ep-a", "ep-b"):
        lines.append(f"{name},{make_video(f'{name}.mp4', seconds=9.0, gop=30)}")
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    base, ref, res = tmp_path / "base", tmp_path / "reference", tmp_path / "resumed"
    _in_process(cli, "fetch", tmp_path / "m.csv", "-w", base, "-j", "2")
    config = (base / "nwt.toml").read_text()
    config = config.replace("segment_time = 4.0", "segment_time = 3.0")
    (base / "nwt.toml").write_text(config.replace("[mask]\n", '[mask]\noverlay_rule = "paper"\n'))
    _in_process(cli, "segment", "-w", base, "-j", "2")
    assert count_where(base, "SELECT COUNT(*) FROM clips WHERE status = 'ok'") == 6
    shutil.copytree(base, ref)
    shutil.copytree(base, res)
    logs = tmp_path / "logs"
    logs.mkdir()
    rng = random.Random(f"{SEED}:stages")

    Progress, Writing = Callable[[Path], tuple[int, ...]], Callable[[Path], frozenset[str]] | None
    stages: list[tuple[str, list[str], Progress, Writing]] = [
        ("flag", ["flag", "-j", "2"], _flag_progress, None),
        ("mask", ["mask", "-j", "2", "--include-unreviewed"], _mask_progress, _mask_writing),
        ("shard", ["shard", "--shard-size", "1KB"], _shard_progress, _shard_writing),
    ]
    for name, args, progress, writing in stages:
        stage_started = time.monotonic(), _cpu()
        reference = _in_process(cli, *args, "-w", ref, items=6)
        kills = kill_repeatedly(
            [*args, "-w", str(res)],
            logs / f"{name}.log",
            rng,
            reference,
            lambda progress=progress: progress(res),
            KILLS,
            writing=None if writing is None else (lambda writing=writing: writing(res)),
            most_changes=2,
            enough=2,
        )
        _in_process(cli, *args, "-w", res)
        _record(name, kills, stage_started)

        # The same catalog and the same files as the uninterrupted run.
        want, got = read_table(ref, "clips", "clip_id"), read_table(res, "clips", "clip_id")
        assert got == want, (name, row_differences(want, got, "clip_id"))
        assert hashes(res, "clips", "prepared", "shards") == hashes(ref, "clips", "prepared", "shards"), name
        for ws in (ref, res):
            _no_work_left(ws)
        assert kills.mid_work >= 2, f"{name}: {FIGURES[name]}"

    # What the stages made, and that the resumed workspace holds the same samples.
    clips = read_table(ref, "clips", "clip_id")
    assert all(c["flag_status"] == "done" and c["mask_status"] == "done" for c in clips), clips
    assert all(c["shard"] for c in clips), clips
    assert len(hashes(ref, "prepared")) == 6 * 4  # video.mp4, audio.npy, mel.npy, stats.json
    no_time = [{k: v for k, v in r.items() if k != "created_at"} for r in read_table(res, "shards", "name")]
    assert no_time == [
        {k: v for k, v in r.items() if k != "created_at"} for r in read_table(ref, "shards", "name")
    ]
    samples = _samples(res)
    assert samples == _samples(ref) and sum(len(s) for s in samples.values()) == 6
    described = json.loads((res / "shards" / "dataset.json").read_text())
    assert sum(described["samples"].values()) == 6
    assert described["samples"] == json.loads((ref / "shards" / "dataset.json").read_text())["samples"]
    print(
        "\nresume figures:",
        json.dumps(FIGURES, indent=1),
        f"\n{time.monotonic() - started[0]:.1f} s, {_cpu() - started[1]:.1f} CPU-s in all",
    )


# --- review --import -----------------------------------------------------------------------------
CLIPS = 600  # enough that a kill lands mid-import even when the machine starves the test


def _review_workspace(root: Path) -> Path:
    """A workspace whose catalog holds CLIPS kept clips of one episode (no media: import reads none)."""
    from nwt_data.catalog import Catalog, EpisodeSource
    from nwt_data.workspace import Workspace

    ws = Workspace.open(root)
    catalog = Catalog(ws.catalog_path)
    catalog.add_episode(EpisodeSource("ep", "http://127.0.0.1:9/ep.mp4", "url", None, {}))
    clips = [
        {"clip_id": f"ep_{i:05d}", "episode_id": "ep", "clip_index": i, "path": f"clips/ep/ep_{i:05d}.mp4",
         "start_time": 4.0 * i, "end_time": 4.0 * i + 4, "start_pts": 0, "end_pts": 0, "time_base": "1/30",
         "clip_offset": 0.0, "trim_start": 4.0 * i + 0.25, "trim_end": 4.0 * i + 3.75, "duration": 3.5,
         "segment_frame_count": 120, "has_audio": 1, "status": "ok"}
        for i in range(CLIPS)
    ]  # fmt: skip
    catalog.save_segmentation("ep", clips, {})
    catalog.conn.close()
    return root


def _decisions() -> bytes:
    """An exported decision file: accepts and rejects by two reviewers, a time on most lines."""
    out = io.StringIO()
    writer = csv.DictWriter(
        out, ["clip_id", "review", "review_reason", "review_note", "reviewer", "reviewed_at"]
    )
    writer.writeheader()
    for i in range(CLIPS):
        rejected = i % 3 == 0
        writer.writerow({
            "clip_id": f"ep_{i:05d}",
            "review": "rejected" if rejected else "accepted",
            "review_reason": ("overlay" if i % 2 else "not_in_frame") if rejected else "",
            "review_note": f"note {i}" if i % 7 == 0 else "",
            "reviewer": "ann" if i % 2 else "bob",
            "reviewed_at": "" if i % 5 == 0 else f"2024-05-01T12:{i // 60 % 60:02d}:{i % 60:02d}+00:00",
        })  # fmt: skip
    return out.getvalue().encode()


def _review_log(ws: Path, untimed: set[str]) -> list[dict[str, Any]]:
    """The review log without the times the import took from the clock (lines without reviewed_at)."""
    conn = sqlite3.connect(f"file:{ws / 'catalog.sqlite'}?mode=ro", uri=True)
    try:
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute("SELECT * FROM review_log ORDER BY entry_id")]
    finally:
        conn.close()
    for row in rows:
        if row["clip_id"] in untimed:
            row.pop("at")
    return rows


def _review_times(ws: Path, untimed: set[str]) -> dict[str, str]:
    conn = sqlite3.connect(f"file:{ws / 'catalog.sqlite'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT clip_id, reviewed_at FROM clips").fetchall()
    finally:
        conn.close()
    return {clip_id: at for clip_id, at in rows if clip_id not in untimed}


def _reviewed(ws: Path) -> tuple[int, ...]:
    return (count_where(ws, "SELECT COUNT(*) FROM clips WHERE review IS NOT NULL"),)


def test_sigkill_of_review_import_then_rerun_matches(tmp_path: Path, cli: Callable[..., Any]) -> None:
    started = time.monotonic(), _cpu()
    ref, res = _review_workspace(tmp_path / "reference"), _review_workspace(tmp_path / "resumed")
    decisions = tmp_path / "decisions.csv"
    decisions.write_bytes(_decisions())
    untimed = {
        r["clip_id"] for r in csv.DictReader(io.StringIO(decisions.read_text())) if not r["reviewed_at"]
    }
    args = ["review", "--import", str(decisions)]
    reference = _in_process(cli, *args, "-w", ref, items=CLIPS)
    kills = kill_repeatedly(
        [*args, "-w", str(res)],
        tmp_path / "review.log",
        random.Random(f"{SEED}:review"),
        reference,
        lambda: _reviewed(res),
        KILLS,
        most_changes=1,
        enough=2,
    )
    _in_process(cli, *args, "-w", res)
    _record("review --import", kills, started)
    print("\nresume figures:", json.dumps(FIGURES, indent=1))

    assert _reviewed(ref) == (CLIPS,)
    want, got = read_table(ref, "clips", "clip_id"), read_table(res, "clips", "clip_id")
    assert got == want, row_differences(want, got, "clip_id")
    # One log entry per decision, as in the uninterrupted run: a rerun does not log again what is in place.
    assert _review_log(res, untimed) == _review_log(ref, untimed)
    assert len(_review_log(res, untimed)) == CLIPS
    # The times the file gives (read_table leaves reviewed_at out: the clock's times differ).
    times = [_review_times(ws, untimed) for ws in (ref, res)]
    assert times[0] == times[1] and len(times[0]) == CLIPS - len(untimed)
    _no_work_left(res)
    assert kills.mid_work >= 2, FIGURES["review --import"]
