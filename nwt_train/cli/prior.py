"""`nwt-train prior`: options -> PriorTrainConfig -> train_prior -> a table of the last values."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from nwt_train.cli.common import (
    ConfigFile,
    Overrides,
    RunFolder,
    build_config,
    choose,
    print_last,
    report_errors,
    step_bar,
)


def _describe(values: dict[str, float]) -> str:
    return (
        f"ce {values['loss/ce']:.3f} (uniform {values['ce/uniform']:.3f}) "
        f"kl {values['loss/kl']:.2f} {values['speed/clips_per_s']:.1f} clips/s"
    )


@report_errors
def prior(
    data: Annotated[
        Path, typer.Option(help="The Memcode shards folder (with codes.json) of `nwt-train encode`.")
    ],
    out: RunFolder,
    arch: Annotated[
        Literal["far", "mar"], typer.Option(help="far (a frame per step) or mar (a Memcode per step).")
    ] = "far",
    preset: Annotated[
        Literal["paper", "tiny"], typer.Option(help="paper (Tables 5/6, C.2.2) or tiny (CPU-sized).")
    ] = "paper",
    config_file: ConfigFile = None,
    overrides: Overrides = None,
) -> None:
    """Train the FAR or MAR prior p(z | audio) on Memcode shards (cross-entropy + style KL).

    Same run folder contract as `dvae`: torchrun for DDP, rank 0 logs to OUT/tensorboard and saves
    OUT/latest.pt; running it again resumes; SIGTERM saves before exiting.

    [bold]Example:[/] nwt-train prior --data ws/codes --out runs/far --arch far --preset tiny
    """
    from nwt_train.config import PRIOR_PRESETS
    from nwt_train.train_prior import train_prior

    console = Console()
    factory = PRIOR_PRESETS[choose("preset", preset, PRIOR_PRESETS)]
    choose("arch", arch, ("far", "mar"))
    config = build_config(lambda: factory(arch), config_file, overrides)
    with step_bar(arch, console, config.steps, _describe) as show:
        last = train_prior(config, data, out, progress=show)
    print_last(f"prior ({arch}): {out}", last, console, skip="ce/head")
