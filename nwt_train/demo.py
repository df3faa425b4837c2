"""The whole mission on a built-in input: synthetic talking-face footage in, a generated video out.

    nwt-data demo     four synthetic talking-face episodes -> fetch, segment, mask, shard
    dVAE              the tiny dVAE-Adv on those clips
    encode            every clip's Memcodes
    prior             the tiny FAR prior p(Memcodes | speech)
    generate          a video from speech no episode contains, a PNG sheet of generated frames beside
                      real ones, and how closely the generated mouth follows that speech (lip-follow r
                      against a circular time-shift null)

Everything is generated here; nothing is downloaded. Running it again resumes every step.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from nwt_data.config import DEMO_DIR
from nwt_data.config import DemoConfig as DataDemoConfig


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    """`nwt-train demo`: where it works and how long each model trains."""

    workspace: Path = Path(DEMO_DIR)
    """Workspace of the demo, created when missing (one holding other episodes is refused); runs go to
    WORKSPACE/runs, the video to WORKSPACE/generated."""
    dvae_steps: int = 500
    """Steps of the tiny dVAE (batch 2 x 8 frames)."""
    prior_steps: int = 400
    """Steps of the tiny FAR prior (batch 4 x 32 frames)."""
    arch: str = "far"
    """The prior: far (a frame per step, fast) or mar (a Memcode per step)."""
    episodes: int = DataDemoConfig.episodes
    """Synthetic talking-face episodes (`nwt-data demo --episodes`, at least 2)."""
    seconds: float = DataDemoConfig.seconds
    """Length of each episode in seconds (at least 8)."""
    speech: str = DataDemoConfig.speech
    """Their speech: espeak (espeak-ng), babble (synthetic syllables) or auto (espeak-ng when installed,
    else babble)."""
    seed: int = 0
    """Seed of the models' training and of the generated video."""

    def __post_init__(self) -> None:
        if self.dvae_steps < 1 or self.prior_steps < 1:
            raise ValueError("dvae_steps and prior_steps must be positive")
        if self.arch not in ("far", "mar"):
            raise ValueError(f"arch must be far or mar, got {self.arch!r}")


def _bar(console: Console) -> Progress:
    columns = (TextColumn("  [bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn())  # fmt: skip
    return Progress(*columns, console=console)


def train_models(config: DemoConfig, shards: Path, runs: Path, console: Console) -> dict[str, Path]:
    """Tiny dVAE -> encode -> tiny prior, each with a progress bar; every step resumes."""
    from nwt_train.config import prior_tiny, tiny
    from nwt_train.encode import EncodeConfig, encode_shards
    from nwt_train.train_dvae import train_dvae
    from nwt_train.train_prior import train_prior

    dvae_config = dataclasses.replace(tiny(), steps=config.dvae_steps, seed=config.seed, device="cpu",
                                      checkpoint_every=100, video_every=10**9)  # fmt: skip
    prior_config = dataclasses.replace(prior_tiny(config.arch), steps=config.prior_steps, seed=config.seed,
                                       device="cpu", checkpoint_every=100)  # fmt: skip
    dvae_run, codes, prior_run = runs / "dvae", shards.parent / "codes", runs / config.arch
    with _bar(console) as bar:
        task = bar.add_task("dVAE", total=dvae_config.steps, info="")
        train_dvae(dvae_config, shards, dvae_run, progress=lambda step, v: bar.update(
            task, completed=step, info=f"pixel L1 {v['recon/pixel_l1']:.3f}"))  # fmt: skip
        bar.update(task, completed=dvae_config.steps)
        task = bar.add_task("encode", total=None, info="")
        encode_shards(EncodeConfig(dvae=dvae_run, data=shards, out=codes, seed=config.seed, device="cpu"),
                      on_start=lambda n: bar.update(task, total=n),
                      on_clip=lambda key, error: bar.advance(task))  # fmt: skip
        task = bar.add_task(f"prior ({config.arch})", total=prior_config.steps, info="")
        train_prior(prior_config, codes, prior_run, progress=lambda step, v: bar.update(
            task, completed=step, info=f"CE {v['loss/ce']:.3f} nats"))  # fmt: skip
        bar.update(task, completed=prior_config.steps)
    return {"dvae": dvae_run, "codes": codes, "prior": prior_run}


def real_frames(shards: Path, episode: str, count: int) -> np.ndarray:
    """`count` frames, evenly spaced, of the first training clip of `episode` (224x256 RGB)."""
    from nwt_train.audio_path import split_samples
    from nwt_train.data import read_video

    for sample in split_samples(shards, "train"):
        if json.loads(sample["json"])["episode_id"] == episode:
            frames = read_video(sample["mp4"])
            return frames[np.linspace(0, len(frames) - 1, count).round().astype(int)]
    raise ValueError(f"no training clip of episode {episode} in {shards}")


def contact_sheet(real: np.ndarray, generated: np.ndarray, openness: np.ndarray, loudness: np.ndarray,
                  out: Path) -> Path:  # fmt: skip
    """A PNG: a row of real frames, a row of generated frames, and the mouth-vs-loudness curves."""
    import cv2

    cell = (112, 128)  # (width, height) of each frame on the sheet
    picks = np.linspace(0, len(generated) - 1, len(real)).round().astype(int)
    rows = [np.concatenate([cv2.resize(f, cell, interpolation=cv2.INTER_NEAREST) for f in frames], axis=1)
            for frames in (real, generated[picks])]  # fmt: skip
    width, plot_h = rows[0].shape[1], 120
    plot = np.full((plot_h, width, 3), 255, np.uint8)
    for series, colour in ((loudness, (60, 60, 220)), (openness, (220, 80, 40))):
        lo, hi = float(np.min(series)), float(np.max(series))
        y = (plot_h - 10) - (series - lo) / max(hi - lo, 1e-9) * (plot_h - 20)
        x = np.linspace(0, width - 1, len(series))
        cv2.polylines(plot, [np.stack([x, y], 1).round().astype(np.int32)], False, colour, 1, cv2.LINE_AA)
    labels = ("real frames", "generated from held-out speech", "blue: speech loudness  red: generated mouth")
    parts = []
    for label, block in zip(labels, (*rows, plot), strict=True):
        band = np.full((18, width, 3), 255, np.uint8)
        cv2.putText(band, label, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        parts += [band, block]
    sheet = np.concatenate(parts, axis=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.png")
    cv2.imwrite(str(tmp), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    tmp.replace(out)
    return out


def run_demo(config: DemoConfig, console: Console) -> dict[str, Any]:
    """The data half (`nwt-data demo`), the models, and a generated video; returns the summary."""
    from nwt_data.cli.demo import demo as data_demo
    from nwt_data.demo import HELD_OUT_SPEECH
    from nwt_data.synthetic import lip_follow

    started = time.perf_counter()
    data_demo(workspace=config.workspace, episodes=config.episodes, seconds=config.seconds,
              speech=config.speech)  # fmt: skip
    # torch loads once the data half is done: a refused workspace is reported at once.
    from nwt_train.audio_path import mouth_and_loudness
    from nwt_train.generate import GenerateConfig, generate

    ws = config.workspace
    shards, runs = ws / "shards", ws / "runs"
    console.rule("[bold]7. nwt-train: tiny dVAE, encode, tiny prior")
    paths = train_models(config, shards, runs, console)
    console.rule("[bold]8. nwt-train generate: video from speech no episode contains")
    speech_wav = ws / "demo-media" / f"{HELD_OUT_SPEECH.name}.wav"
    episode = "face-1"  # the first synthetic episode (nwt_data.synthetic.demo_episodes)
    video = ws / "generated" / f"{episode}-{config.arch}.mp4"
    with _bar(console) as bar:
        task = bar.add_task("generate", total=None, info="")
        summary = generate(
            GenerateConfig(prior=paths["prior"], dvae=paths["dvae"], audio=speech_wav, out=video,
                           episode=episode, seed=config.seed, device="cpu"),
            on_frame=lambda done, total: bar.update(task, completed=done, total=total),
        )  # fmt: skip
    frames, openness, loudness = mouth_and_loudness(video, speech_wav)
    follow = lip_follow(openness, loudness)
    sheet = contact_sheet(real_frames(shards, episode, 8), frames, openness, loudness,
                          ws / "generated" / f"{episode}-{config.arch}-sheet.png")  # fmt: skip
    result = {
        "video": str(video),
        "sheet": str(sheet),
        "frames": summary["frames"],
        "lip_follow_r": follow["r"],
        "null_p99": follow["null_p99"],
        "minutes": (time.perf_counter() - started) / 60,
        **{f"{name}_run": str(path) for name, path in paths.items()},
    }
    (ws / "generated" / "demo-summary.json").write_text(json.dumps(result, indent=2))
    table = Table(title="nwt demo: footage in, video out", header_style="bold")
    table.add_column("what")
    table.add_column("where / value")
    table.add_row("training shards", str(shards))
    table.add_row("dVAE run", str(paths["dvae"]))
    table.add_row(f"{config.arch.upper()} prior run", str(paths["prior"]))
    table.add_row("generated video", f"{video} ({summary['frames']} frames, with the speech)")
    table.add_row("sheet: real vs generated", str(sheet))
    verdict = "follows the speech" if follow["r"] > follow["null_p99"] else "does NOT follow the speech yet"
    table.add_row("lip-follow r", f"{follow['r']:.2f} (null p99 {follow['null_p99']:.2f}): mouth {verdict}")
    table.add_row("time", f"{result['minutes']:.1f} min")
    console.print(table)
    return result
