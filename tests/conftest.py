"""Shared fixtures: tiny generated media (real ffmpeg), a real HTTP server on 127.0.0.1, the CLI."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nwt_data.cli.app import app
from nwt_data.demo import serve_folder
from nwt_data.media.ffmpeg import lavfi_demo_args, run_ffmpeg

SHARED_MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"


@pytest.fixture
def make_video(tmp_path: Path) -> Callable[..., Path]:
    """Generate a small H.264/AAC MP4 with ffmpeg's lavfi sources (testsrc2 + a beeping tone)."""

    def make(
        name: str = "episode.mp4",
        *,
        seconds: float = 6.0,
        width: int = 320,
        height: int = 180,
        fps: str = "30",
        gop: int = 30,
        with_audio: bool = True,
        folder: Path | None = None,
        extra_video_filter: str = "",
        source: str = "testsrc2",
    ) -> Path:
        out = (folder or tmp_path / "media") / name
        out.parent.mkdir(parents=True, exist_ok=True)
        run_ffmpeg(lavfi_demo_args(out, seconds=seconds, width=width, height=height, fps=fps, gop=gop,
                                   with_audio=with_audio, extra_video_filter=extra_video_filter,
                                   source=source))  # fmt: skip
        return out

    return make


@pytest.fixture
def media_server(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A real HTTP server on 127.0.0.1 serving `(folder, base_url)`."""
    folder = tmp_path / "served"
    folder.mkdir()
    with serve_folder(folder) as base_url:
        yield folder, base_url


@pytest.fixture
def cli() -> Callable[..., object]:
    """Invoke `nwt-data` in-process with an argv list; returns click's Result."""
    runner = CliRunner()

    def invoke(*args: str | os.PathLike[str]):  # type: ignore[no-untyped-def]
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture
def shared_media() -> Path:
    if not SHARED_MEDIA.is_dir():
        pytest.skip(f"{SHARED_MEDIA} is absent (real third-party clips are not in this checkout)")
    return SHARED_MEDIA
