"""Shared fixtures: tiny generated media (real ffmpeg), a real HTTP server on 127.0.0.1, the CLI."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from nwt_data import config as data_config
from nwt_data.catalog import Catalog
from nwt_data.cli.app import app
from nwt_data.demo import STUDIO_BACKGROUND, STUDIO_FILTER, serve_folder
from nwt_data.media.ffmpeg import lavfi_demo_args, run_ffmpeg
from nwt_data.stages.fetch import run_fetch
from nwt_data.stages.mask import run_mask
from nwt_data.stages.segment import run_segment
from nwt_data.stages.shard import run_shard
from nwt_data.workspace import Workspace

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


@pytest.fixture(scope="session")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated studio footage through the real nwt-data stages: a few 256x224 training clips.

    Shared by the dVAE and prior tests (session scope: built once).
    """
    root = tmp_path_factory.mktemp("dvae-data")
    source = root / "studio.mp4"
    run_ffmpeg(lavfi_demo_args(source, seconds=12.5, width=640, height=360, fps="30", gop=60,
                               source=STUDIO_BACKGROUND, extra_video_filter=STUDIO_FILTER))  # fmt: skip
    (root / "m.csv").write_text(f"episode_id,url\nstudio,{source}\n")
    ws = Workspace.open(root / "ws")
    catalog = Catalog(ws.catalog_path)
    quiet = Console(quiet=True)
    run_fetch(ws, catalog, root / "m.csv", data_config.FetchConfig(workers=1), quiet)
    run_segment(ws, catalog, data_config.SegmentConfig(workers=1), quiet)
    run_mask(ws, catalog, data_config.MaskConfig(workers=1, include_unreviewed=True), quiet)
    run_shard(ws, catalog, data_config.ShardConfig(), quiet)
    return ws.shards_dir


# --- the fast tier (`nox -s quick`, `pytest -m quick`) -------------------------------------------
# A test is quick when it is not marked slow and builds no media, shards, models or clusters: these
# fixtures (and the few tests below that start training processes themselves) take seconds each.
HEAVY_FIXTURES = frozenset({
    "shards", "make_video", "media_server", "served", "review_workspace", "dvae_run", "codes", "far_run",
    "mar_run", "speech", "shared_media", "studio_workspace", "segmented", "three_shards", "ray_address",
    "counting_server", "slow_server", "make_real_variants", "portraits", "fake_mnist", "fake_digits",
    "scored", "report",
})  # fmt: skip
HEAVY_TESTS = frozenset({
    "test_two_process_ddp_gradients_match_one_process",
    "test_accumulation_under_two_process_ddp_equals_one_batch",
    "test_prior_trains_under_torchrun_with_two_processes",
    "test_demo_runs_end_to_end_and_resumes",
    "test_dvae_accumulation_2x1_equals_batch_2",
    "test_prior_accumulation_2x1_equals_batch_2",
    "test_paper_preset_maps_a_clip_to_a_16x14x8_grid_and_back",
    "test_describe_prior_counts_the_real_model",
    "test_integer_pcm_stereo_audio_is_read_at_the_right_scale_and_pitch",
    "test_cut_score_finds_hard_cuts_and_fades",
    "test_rendered_episode_carries_the_mouth_in_the_crop",  # encodes 1280x720; quick: test_a_drawn_frame_*
    "test_describe_dvae_counts_the_real_model_and_critics",  # builds the real paper and tiny dVAEs
})  # fmt: skip


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        heavy = HEAVY_FIXTURES & set(getattr(item, "fixturenames", ()))
        if not heavy and item.get_closest_marker("slow") is None and item.originalname not in HEAVY_TESTS:
            item.add_marker(pytest.mark.quick)
