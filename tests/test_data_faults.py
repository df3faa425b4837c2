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
