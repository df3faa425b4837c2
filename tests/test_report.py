"""`nwt-data report` on a real workspace (generated footage through fetch, segment, flag, mask and
shard): the page's structure read back without a browser, then opened in headless Chromium."""

from __future__ import annotations

import base64
import html.parser
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import cv2
import numpy as np
import pytest

from nwt_data.curation.report import gather, sample_clips
from nwt_data.demo import STUDIO_BACKGROUND, STUDIO_FILTER

SECTIONS = ("durations", "episodes", "rejections", "flags", "mask", "speech", "sheets")


class Page(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.svgs = 0
        self.images: list[str] = []
        self.links: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if "id" in a:
            self.ids.append(str(a["id"]))
        self.svgs += tag == "svg"
        if tag == "img":
            self.images.append(str(a["src"]))
        if tag == "a":
            self.links.append(str(a["href"]))
        for key in ("src", "href"):
            value = a.get(key) or ""
            if tag in ("script", "link", "img") and value and not value.startswith("data:"):
                self.external.append(value)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from typer.testing import CliRunner

    from nwt_data.cli.app import app
    from nwt_data.media.ffmpeg import lavfi_demo_args, run_ffmpeg

    root = tmp_path_factory.mktemp("report")
    files = {}
    for name, seconds in (("studio", 9.0), ("short", 2.1)):
        out = root / f"{name}.mp4"
        run_ffmpeg(lavfi_demo_args(out, seconds=seconds, width=1280, height=720, fps="30", gop=30,
                                   source=STUDIO_BACKGROUND, extra_video_filter=STUDIO_FILTER))  # fmt: skip
        files[name] = out
    (root / "m.csv").write_text("episode_id,url\n" + "".join(f"{k},{v}\n" for k, v in files.items()))
    ws = root / "ws"
    runner = CliRunner()
    for args in (["fetch", str(root / "m.csv")], ["segment"], ["flag"], ["mask", "--include-unreviewed"],
                 ["shard"], ["report", "--out", "out/report.html"]):  # fmt: skip
        result = runner.invoke(app, [*args, "-w", str(ws)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    return ws / "out" / "report.html"


def test_report_is_one_self_contained_page(report: Path) -> None:
    page = Page()
    page.feed(report.read_text())
    assert all(s in page.ids for s in SECTIONS), page.ids
    assert page.svgs >= 7  # durations, 3 per-episode charts, reasons, flags, mask, speech
    assert not page.external, page.external  # nothing to fetch: images are data URIs
    assert page.images and len(page.images) == len(page.links)
    ws = report.parents[1]
    for src, href in zip(page.images, page.links, strict=True):
        jpeg = base64.b64decode(src.removeprefix("data:image/jpeg;base64,"))
        frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert frame is not None and frame.shape[1] == 224
        target = (report.parent / unquote(href)).resolve()
        assert target.is_file() and target.is_relative_to(ws / "clips")  # the clip file itself
    text = report.read_text()
    assert "too_short" in text  # the 2.1 s episode's clip, left out and counted
    # The studio's side panel is what mask paints: outlined in red on its tiles.
    reds = [
        cv2.imdecode(np.frombuffer(base64.b64decode(s.split(",", 1)[1]), np.uint8), 1) for s in page.images
    ]
    assert any(((f[:, :, 2] > 200) & (f[:, :, 1] < 60) & (f[:, :, 0] < 60)).sum() > 100 for f in reds)


def test_gather_and_sample_scale_to_100000_clips() -> None:
    rows = [
        {"clip_id": f"ep{i // 100:04d}_{i % 100:05d}", "episode_id": f"ep{i // 100:04d}", "status": "ok",
         "reason": None, "duration": 7.0, "review": "rejected" if i % 10 == 0 else None,
         "review_reason": "overlay", "split": "train", "flag_status": "done",
         "flags": "no_speech" if i % 4 == 0 else "", "masked_fraction": 0.0, "speech_ratio": 0.5}
        for i in range(100_000)
    ]  # fmt: skip
    stats = gather(rows, ["no_speech", "overlay"])
    assert stats.clips == 100_000 and stats.episodes == 1000
    assert stats.flag_counts == {"no_speech": 25_000, "overlay": 0}
    assert stats.reasons == {"review: overlay": 10_000}
    chosen = sample_clips([r["clip_id"] for r in rows], 48)
    assert len(chosen) == 48 and chosen == sample_clips([r["clip_id"] for r in reversed(rows)], 48)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_opens_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium (the nox tests session installs Debian's package when it can)")
    shot = tmp_path / "shot.png"
    argv = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1000,3000",
            f"--screenshot={shot}", report.as_uri()]  # fmt: skip
    subprocess.run(argv, check=True, timeout=120, capture_output=True)
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (3000, 1000)
    ink = (image < 200).any(axis=2)  # anything but the white page
    assert ink.mean() > 0.02, "the screenshot is (almost) blank"
    # The contact sheet's frames are rendered (the studio's grey set), not broken-image icons.
    assert (np.abs(image.astype(int) - 0x30).max(axis=2) < 12).sum() > 5000
