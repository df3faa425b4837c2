"""nwt-data under damaged input and surroundings (outside the runner): each a one-line message."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from nwt_data.catalog import Catalog
from nwt_data.media.probe import MediaInfo, Packets, truncation


def _packets(seconds: float, rate: int = 30) -> Packets:
    n = round(seconds * rate)
    return Packets(time_base=Fraction(1, rate), pts=np.arange(n, dtype=np.int64),
                   duration=np.ones(n, dtype=np.int64), keyframe=np.arange(n) % 30 == 0,
                   discard=np.zeros(n, dtype=bool))  # fmt: skip


def _info(container: float, video: float, audio: float | None) -> MediaInfo:
    return MediaInfo(path=Path("x.mp4"), format_name="mp4", container_duration=container, width=320,
                     height=180, video_codec="h264", average_rate=Fraction(30), nominal_rate=Fraction(30),
                     video=_packets(video), audio_codec="aac" if audio else None, sample_rate=None,
                     channels=None, audio=_packets(audio, 50) if audio else None,
                     edit_list=False)  # fmt: skip


@pytest.mark.parametrize(
    ("container", "video", "audio", "cut"),
    [
        (8.0, 8.0, 8.0, False),
        (8.02, 8.0, 7.98, False),  # priming and rounding
        (8.0, 7.6, 8.0, False),  # audio a little longer than the video
        (8.0, 4.03, 4.0, True),  # the faststart MP4 cut at 50%
        (8.0, 4.0, None, True),
        (0.0, 4.0, None, False),  # no declared length: nothing to compare
    ],
)
def test_truncation_compares_container_and_streams(container, video, audio, cut) -> None:
    reason = truncation(_info(container, video, audio))
    assert (reason is not None) == cut
    if cut:
        assert "cut short" in reason and f"{container:.2f} s" in reason


@pytest.mark.slow
def test_a_download_cut_short_is_refused(tmp_path: Path, media_server, make_video, cli) -> None:
    folder, base = media_server
    whole = make_video("whole.mp4", folder=folder, seconds=8, gop=30)
    data = whole.read_bytes()
    (folder / "half.mp4").write_bytes(data[: len(data) // 2])
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"episode_id,url\nwhole,{base}/whole.mp4\nhalf,{base}/half.mp4\n")
    ws = tmp_path / "ws"
    result = cli("fetch", manifest, "-w", ws, "--retries", "0", "-j", "1")
    assert result.exit_code == 1, result.output
    rows = {r["episode_id"]: r for r in Catalog(ws / "catalog.sqlite").episodes()}
    assert rows["whole"]["fetch_status"] == "done"
    assert rows["half"]["fetch_status"] == "failed" and rows["half"]["fetch_error_kind"] == "invalid-media"
    assert "cut short" in rows["half"]["fetch_error"], rows["half"]["fetch_error"]
    assert not (ws / "episodes" / "half.mp4").exists()
    assert json.loads(rows["whole"]["probe"])["duration"] == pytest.approx(8.0, abs=0.05)


# --- review import ------------------------------------------------------------------------------
def _review_catalog(tmp_path: Path) -> Catalog:
    from nwt_data.catalog import EpisodeSource

    catalog = Catalog(tmp_path / "catalog.sqlite")
    catalog.add_episode(EpisodeSource("a", "http://x/a.mp4", "url", None, {}))
    clips = [
        {"clip_id": f"a_{i:05d}", "episode_id": "a", "clip_index": i, "path": f"clips/a/a_{i:05d}.mp4",
         "start_time": 4.0 * i, "end_time": 4.0 * i + 4, "start_pts": 0, "end_pts": 0, "time_base": "1/30",
         "clip_offset": 0.0, "segment_frame_count": 120, "has_audio": 1, "status": "ok", "flags": "",
         "flag_status": "done"}
        for i in range(3)
    ]  # fmt: skip
    catalog.save_segmentation("a", clips, {})
    return catalog


def test_parse_decisions_reads_a_bom_and_reports_bad_lines() -> None:
    from nwt_data.review.session import parse_decisions

    bom_csv = "\ufeffclip_id,review,review_reason\na_00000,accepted,\n".encode()
    records, problems = parse_decisions(bom_csv, "d.csv")
    assert records[0]["clip_id"] == "a_00000" and problems == []
    lines = b'{"clip_id": "a_00000", "review": "accepted"}\n[1, 2]\n"text"\n{broken\n'
    records, problems = parse_decisions(lines, "d.jsonl")
    assert [r["clip_id"] for r in records] == ["a_00000"]
    assert problems == [
        "d.jsonl line 2 is a JSON list, not an object",
        "d.jsonl line 3 is a JSON str, not an object",
        "d.jsonl line 4 is not JSON: Expecting property name enclosed in double quotes",
    ]


@pytest.mark.parametrize(
    ("name", "raw", "message", "code", "applied"),
    [
        ("d.csv", "clip_id,review\na_00000,accepted\n".encode("utf-16"), "is not UTF-8 text", 2, 0),
        ("d.csv", b"\xef\xbb\xbfclip_id,review\na_00000,accepted\na_00001,accepted\n", None, 0, 2),
        ("d.jsonl", b'{"clip_id": "a_00000", "review": "accepted"}\n[1]\n', "not an object", 1, 1),
        ("d.csv", b"id;decision\na_00000;accepted\n", "has no clip_id column", 2, 0),
        ("d.csv", b"clip_id,review,reviewed_at\na_00000,accepted,yesterday\n"
                  b"a_00001,accepted,2024-05-01T12:00:00Z\n",
         "reviewed_at 'yesterday' is not an ISO 8601 time", 1, 1),
    ],
    ids=["utf-16", "bom", "jsonl-list", "no-clip-id-column", "reviewed-at"],
)  # fmt: skip
def test_review_import_of_bad_files_is_one_line(
    tmp_path: Path, cli, name, raw, message, code, applied
) -> None:
    from nwt_data.workspace import Workspace

    ws = Workspace.open(tmp_path / "ws")
    catalog = _review_catalog(ws.root)
    assert catalog.path == ws.catalog_path
    path = tmp_path / name
    path.write_bytes(raw)
    result = cli("review", "-w", ws.root, "--import", path)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    if message:
        lines = [line for line in result.output.splitlines() if message in line]
        assert len(lines) == 1, result.output
    decided = [c for c in ("a_00000", "a_00001", "a_00002") if Catalog(ws.catalog_path).clip(c)["review"]]
    assert len(decided) == applied


# --- a read-only workspace ------------------------------------------------------------------------
def _as_unprivileged(argv: list[str]) -> list[str]:
    """Root ignores file modes; drop the capability that lets it (CAP_DAC_OVERRIDE) for this command."""
    import os
    import shutil

    if os.geteuid() != 0:
        return argv
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a read-only folder cannot be simulated")
    drop = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}", "--", *argv]


def test_status_reads_a_read_only_workspace(tmp_path: Path, cli) -> None:
    import os
    import stat
    import subprocess
    import sys

    manifest = tmp_path / "m.csv"
    manifest.write_text("episode_id,url\n")
    ws = tmp_path / "ws"
    assert cli("fetch", manifest, "-w", ws).exit_code == 0
    before = {p: p.read_bytes() for p in ws.rglob("*") if p.is_file()}
    folders = [ws, *(p for p in ws.rglob("*") if p.is_dir())]
    for path in [*before, *folders]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        entry = "from nwt_data.cli.app import main; main()"
        argv = _as_unprivileged([sys.executable, "-c", entry, "status", "-w", str(ws), "--json"])
        env = os.environ | {"COLUMNS": "200"}
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=False)
    finally:
        for path in [*folders, *before]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "fetch (episodes)" in json.loads(done.stdout)
    assert {p: p.read_bytes() for p in ws.rglob("*") if p.is_file()} == before


# --- a full disk ----------------------------------------------------------------------------------
def _fill_the_disk(_: object) -> None:
    raise OSError("84000 requested and 55232 written")  # how PyAV reports a write cut short


def _no_space(_: object) -> None:
    import errno

    raise OSError(errno.ENOSPC, "No space left on device", "prepared/a.mp4")


def _other(_: object) -> None:
    raise OSError(5, "Input/output error")


def test_a_full_disk_is_one_line_that_says_what_to_do() -> None:
    from nwt_data.runner import call_item

    for work in (_fill_the_disk, _no_space):
        outcome = call_item(work, "clip", None)
        assert outcome.error is not None and outcome.error.kind == "disk-full"
        assert (
            "the disk is full" in outcome.error.one_line() and "free some space" in outcome.error.one_line()
        )
    assert "prepared/a.mp4" in call_item(_no_space, "clip", None).error.one_line()
    other = call_item(_other, "clip", None).error
    assert other is not None and other.kind != "disk-full" and "Input/output error" in str(other)


def test_a_full_disk_outside_an_item_is_one_line(monkeypatch) -> None:
    import errno

    import typer
    from typer.testing import CliRunner

    from nwt_data.cli.common import handle_errors

    monkeypatch.delenv("NWT_DEBUG", raising=False)
    probe = typer.Typer()

    @probe.command()
    @handle_errors
    def write() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "shards/train-000000.tar")

    result = CliRunner().invoke(probe, [], env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [
        "error: the disk is full writing shards/train-000000.tar (free some space and run the command "
        "again; finished items are kept)"
    ]


# --- what a killed run leaves -------------------------------------------------------------------
def test_shard_clears_a_half_written_shard_and_dataset_json_left_by_a_kill(tmp_path: Path, cli) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("episode_id,url\n")
    ws = tmp_path / "ws"
    assert cli("fetch", manifest, "-w", ws).exit_code == 0
    shards = ws / "shards"
    left = [shards / ".train-000000.tar.0123abcd.partial", shards / ".dataset.json.89abcdef.tmp"]
    for path in left:
        path.write_bytes(b"half")
    assert cli("shard", "-w", ws).exit_code == 0
    assert sorted(p.name for p in shards.iterdir()) == ["dataset.json"]


def test_importing_decisions_again_logs_nothing_new(tmp_path: Path) -> None:
    from nwt_data.review.session import import_decisions

    catalog = _review_catalog(tmp_path)
    path = tmp_path / "d.csv"
    path.write_text(
        "clip_id,review,review_reason,reviewer,reviewed_at\na_00000,accepted,,ann,\n"
        "a_00001,rejected,overlay,bob,2024-05-01T12:00:00+00:00\n"
    )
    log = "SELECT clip_id, review, at FROM review_log ORDER BY entry_id"
    assert import_decisions(catalog, path) == (2, [])
    first = catalog.conn.execute(log).fetchall()
    assert import_decisions(catalog, path) == (2, [])  # a rerun, e.g. after a killed import
    assert catalog.conn.execute(log).fetchall() == first and len(first) == 2
    path.write_text("clip_id,review,review_reason,reviewer\na_00000,rejected,overlay,ann\n")
    assert import_decisions(catalog, path) == (1, [])  # a changed decision is logged
    assert len(catalog.conn.execute(log).fetchall()) == 3
