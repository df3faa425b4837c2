"""`nwt-train generate`: options -> GenerateConfig -> generate -> a one-line summary."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from nwt_data.cli.options import config_option, given
from nwt_train.cli.common import lazy_bar, make_config, report_errors
from nwt_train.command_config import GenerateConfig
from nwt_train.errors import TrainConfigError


def parse_style_values(items: list[str] | None) -> tuple[tuple[int, float], ...]:
    values = []
    for item in items or []:
        variate, sep, value = item.partition("=")
        try:
            values.append((int(variate), float(value)))
        except ValueError:
            sep = ""
        if not sep:
            raise TrainConfigError(f"--style-set takes VARIATE=VALUE such as 3=1.5, not {item!r}")
    return tuple(values)


@report_errors
def generate(
    prior_run: Annotated[Path, typer.Option("--prior", help="A run folder of `nwt-train prior`.")],
    dvae_run: Annotated[Path, typer.Option("--dvae", help="The dVAE run whose Memcodes the prior learned.")],
    audio: Annotated[Path, typer.Option(help="Speech: any audio or video file ffmpeg reads.")],
    episode: Annotated[str, typer.Option(help="Episode id (as in the manifest) whose look to use.")],
    out: Annotated[Path, typer.Option(help="The MP4 to write (a .json summary is written beside it).")],
    temperature: Annotated[float | None, config_option(GenerateConfig, "temperature")] = None,
    seed: Annotated[int | None, config_option(GenerateConfig, "seed")] = None,
    style_from: Annotated[Path | None, config_option(GenerateConfig, "style_from")] = None,
    style_set: Annotated[
        list[str] | None,
        typer.Option(help="VARIATE=VALUE: fix one variate of z_l, e.g. 3=2.0 (repeatable)."),
    ] = None,
    seconds: Annotated[float | None, config_option(GenerateConfig, "seconds")] = None,
    cache: Annotated[bool | None, config_option(GenerateConfig, "cache", "--cache/--no-cache")] = None,
    device: Annotated[str | None, config_option(GenerateConfig, "device")] = None,
) -> None:
    """Generate video from speech: mel -> Memcodes (prior) -> frames (dVAE) -> MP4 with the audio.

    Style control (Section 3.5): by default z_l is drawn from N(0, I); --style-set fixes chosen
    variates; --style-from copies a reference clip's style. Episode control (3.4) with --episode.

    [bold]Example:[/] nwt-train generate --prior runs/far --dvae runs/dvae --audio speech.wav
    --episode ep01 --out clip.mp4
    """
    from nwt_train.generate import generate as run_generate

    console = Console()
    style_values = parse_style_values(style_set)
    options = given(temperature=temperature, seed=seed, style_from=style_from, seconds=seconds, cache=cache,
                    device=device)  # fmt: skip
    config = make_config(
        lambda: GenerateConfig(prior=prior_run, dvae=dvae_run, audio=audio, out=out, episode=episode,
                               style_values=style_values, **options)
    )  # fmt: skip
    columns = (TextColumn("[bold]generate"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[speed]}"), TimeElapsedColumn())  # fmt: skip
    with lazy_bar("generate", console, *columns, speed="") as bar:
        clock = {"start": 0.0}

        def frame_done(done: int, total: int) -> None:
            now = time.perf_counter()
            if done == 1:
                clock["start"] = now
            rate = (done - 1) / (now - clock["start"]) if done > 1 else 0.0
            bar.update(completed=done, total=total, speed=f"{rate:.1f} frames/s")

        summary = run_generate(config, on_frame=frame_done)
    console.print(
        f"[green]✓[/] {summary['out']}: {summary['frames']} frames ({summary['seconds']:.2f} s at 30 FPS), "
        f"{summary['arch'].upper()} sampled {summary['frames_per_s']:.1f} frames/s, style {summary['style']}"
    )
