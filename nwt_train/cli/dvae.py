"""`nwt-train dvae`: options -> DVAETrainConfig -> train_dvae -> a table of the last values."""

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
        f"recon {values['loss/recon']:.4f} critic {values['critic/loss']:.3f} "
        f"perplexity {values['memcodes/argmax_perplexity_mean']:.2f} "
        f"{values['speed/clips_per_s']:.1f} clips/s"
    )


@report_errors
def dvae(
    data: Annotated[Path, typer.Option(help="The shards folder (with dataset.json) of `nwt-data shard`.")],
    out: RunFolder,
    preset: Annotated[
        Literal["paper", "tiny", "tiny-real"],
        typer.Option(help="paper (Table 4, C.2.1), tiny (CPU-sized), tiny-real (tiny, for real clips)."),
    ] = "paper",
    config_file: ConfigFile = None,
    overrides: Overrides = None,
) -> None:
    """Train the dVAE-Adv (Memcodes, critics, WGAN-GP) on CPU, one GPU, or under torchrun.

    The same command runs everywhere: `torchrun --nproc-per-node 8 -m nwt_train.cli dvae ...` trains
    with DDP; rank 0 logs to OUT/tensorboard and saves OUT/latest.pt. Running it again on the same
    OUT resumes; SIGTERM saves before exiting.

    [bold]Example:[/] nwt-train dvae --data ws/shards --out runs/dvae-tiny --preset tiny --set steps=300
    """
    from nwt_train.config import PRESETS
    from nwt_train.train_dvae import train_dvae

    console = Console()
    config = build_config(PRESETS[choose("preset", preset, PRESETS)], config_file, overrides)

    def warn(message: str) -> None:  # a collapsed Memcode head: loud, above the bar
        console.print(f"[bold red]{message}[/]", highlight=False)

    with step_bar("dvae", console, config.steps, _describe) as show:
        last = train_dvae(config, data, out, progress=show, warn=warn)
    # Per-head and per-critic figures stay in TensorBoard; the table keeps the means.
    shown = {k: v for k, v in last.items() if "_head" not in k and k.count("/") < 2}
    print_last(f"dvae: {out}", shown, console, skip="schedule/")
