"""`nwt-data fetch` through real yt-dlp against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
from pathlib import Path

import pytest

from nwt_data.catalog import Catalog
from nwt_data.stages.fetch import classify


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def served(media_server, make_video):
    folder, base = media_server
    make_video("good1.mp4", folder=folder, seconds=3, gop=30)
    make_video("good2.mp4", folder=folder, seconds=2, fps="30000/1001", gop=15)
    (folder / "notes.txt").write_text("this is not a video\n" * 50)
    (folder / "page.html").write_text("<html><body><p>no video here</p></body></html>")
    (folder / "fake.mp4").write_bytes(b"\x00\x01garbage" * 4000)
    return folder, base


def test_fetch_bad_items_fail_clearly_while_good_ones_complete(tmp_path: Path, served, cli) -> None:
    folder, base = served
    dead = f"http://127.0.0.1:{_free_port()}/gone.mp4"
    local = folder / "good2.mp4"
    manifest = tmp_path / "episodes.csv"
    manifest.write_text(
        "# test manifest\n"
        "episode_id,url,title\n"
        f"good-http,{base}/good1.mp4,first\n"
        f"missing,{base}/missing.mp4,404\n"
        f"refused,{dead},nobody listens\n"
        f"text,{base}/notes.txt,not a video\n"
        f"page,{base}/page.html,a web page without video\n"
        f"fake,{base}/fake.mp4,garbage bytes\n"
        f"good-http,{base}/good2.mp4,duplicate id\n"
        f"good-local,{local},a local path\n"
        f"../escape,{base}/good1.mp4,path traversal\n"
    )
    ws = tmp_path / "ws"
    result = cli("fetch", manifest, "--workspace", ws, "--retries", "0", "--workers", "3")
    assert result.exit_code == 1
    catalog = Catalog(ws / "catalog.sqlite")
    rows = {r["episode_id"]: r for r in catalog.episodes()}
    assert set(rows) == {"good-http", "missing", "refused", "text", "page", "fake", "good-local"}

    for episode_id, source in (("good-http", folder / "good1.mp4"), ("good-local", local)):
        row = rows[episode_id]
        assert row["fetch_status"] == "done"
        fetched = ws / row["path"]
        assert fetched == ws / "episodes" / f"{episode_id}.mp4"
        assert row["sha256"] == _sha256(fetched) == _sha256(source)
        assert row["size"] == source.stat().st_size
        facts = json.loads(row["probe"])
        assert facts["width"] == 320 and facts["height"] == 180
        assert facts["video_codec"] == "h264" and facts["audio_codec"] == "aac"
        assert facts["keyframes"][0] == 0.0
    assert rows["good-http"]["downloader"].startswith("yt-dlp 20")
    assert json.loads(rows["good-http"]["probe"])["frame_rate"] == "30/1"
    assert json.loads(rows["good-local"]["probe"])["frame_rate"] == "30000/1001"
    assert json.loads(rows["good-http"]["extra"]) == {"title": "first"}

    expected_kinds = {
        "missing": "gone",
        "refused": "network",
        "text": "invalid-media",
        "page": "unsupported",
        "fake": "invalid-media",
    }
    for episode_id, kind in expected_kinds.items():
        row = rows[episode_id]
        assert row["fetch_status"] == "failed", episode_id
        assert row["fetch_error_kind"] == kind, (episode_id, row["fetch_error"])
        assert "\n" not in row["fetch_error"]
    # Manifest problems are reported per line, with the line number, and never touch the disk.
    out = " ".join(result.output.split())
    assert "duplicate episode_id 'good-http' (first on line 3)" in out
    assert "invalid episode_id '../escape'" in out
    assert not (tmp_path / "escape.mp4").exists()
    assert sorted(p.name for p in (ws / "episodes").iterdir()) == ["good-http.mp4", "good-local.mp4"]
    assert not list((ws / "tmp" / "fetch").iterdir())


def test_fetch_skips_done_and_failed_until_retry_failed(tmp_path: Path, served, cli) -> None:
    folder, base = served
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"episode_id,url\nok,{base}/good1.mp4\nlater,{base}/later.mp4\n")
    ws = tmp_path / "ws"
    assert cli("fetch", manifest, "-w", ws, "--retries", "0").exit_code == 1

    shutil.copy(folder / "good2.mp4", folder / "later.mp4")  # the missing file appears
    again = cli("fetch", manifest, "-w", ws, "--retries", "0")
    assert again.exit_code == 1  # still reported: failed earlier, not retried
    assert "--retry-failed" in again.output
    assert Catalog(ws / "catalog.sqlite").episode("later")["fetch_status"] == "failed"

    retried = cli("fetch", manifest, "-w", ws, "--retry-failed")
    assert retried.exit_code == 0, retried.output
    rows = {r["episode_id"]: r for r in Catalog(ws / "catalog.sqlite").episodes()}
    assert rows["later"]["fetch_status"] == "done" and rows["later"]["fetch_error"] is None
    assert rows["ok"]["fetch_attempts"] == 1  # done items are never fetched again
    runs = Catalog(ws / "catalog.sqlite").conn.execute("SELECT command, config FROM runs").fetchall()
    assert [r["command"] for r in runs] == ["fetch"] * 3
    assert json.loads(runs[-1]["config"])["retry_failed"] is True


def test_changed_url_for_a_known_episode_is_refused(tmp_path: Path, served, cli) -> None:
    _, base = served
    ws = tmp_path / "ws"
    first = tmp_path / "a.csv"
    first.write_text(f"episode_id,url\nep,{base}/good1.mp4\n")
    assert cli("fetch", first, "-w", ws).exit_code == 0
    second = tmp_path / "b.csv"
    second.write_text(f"episode_id,url\nep,{base}/good2.mp4\n")
    result = cli("fetch", second, "-w", ws)
    assert result.exit_code == 1
    assert "already in the workspace" in " ".join(result.output.split())
    assert Catalog(ws / "catalog.sqlite").episode("ep")["url"].endswith("good1.mp4")


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("ERROR: [generic] Unable to download webpage: HTTP Error 404: File not found", "gone"),
        ("ERROR: [youtube] abc: Private video. Sign in if you've been granted access", "gone"),
        ("ERROR: Unable to download webpage: HTTP Error 429: Too Many Requests", "throttled"),
        ("ERROR: Unable to download webpage: <urlopen error [Errno 111] Connection refused>", "network"),
        ("ERROR: Unsupported URL: http://example.com/page", "unsupported"),
        ("ERROR: something nobody expected", "other"),
    ],
)
def test_classify(message: str, kind: str) -> None:
    assert classify(message) == kind


def test_manifest_errors_are_one_line_and_exit_2(tmp_path: Path, cli) -> None:
    missing = cli("fetch", tmp_path / "nope.csv", "-w", tmp_path / "ws")
    assert missing.exit_code == 2
    assert "manifest" in missing.output and "not found" in missing.output
    no_url = tmp_path / "bad.csv"
    no_url.write_text("episode_id,link\na,b\n")
    result = cli("fetch", no_url, "-w", tmp_path / "ws")
    assert result.exit_code == 2
    assert "has no url column" in result.output
