"""`nwt-train dvae`: options -> DVAETrainConfig -> train_dvae -> a table of the last values."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from nwt_train.cli.common import (
    ConfigFile,
    Overrides,
    build_config,
    choose,
    is_main_rank,
    lazy_bar,
    print_last,
    report_errors,
)


@report_errors
def dvae(
    data: Annotated[Path, typer.Option(help="The shards folder (with dataset.json) of `nwt-data shard`.")],
    out: Annotated[Path, typer.Option(help="Run folder: checkpoints, TensorBoard, config.json. Resumes.")],
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
    with lazy_bar("dvae", console, total=config.steps, info="") as bar:

        def show(step: int, values: dict[str, float]) -> None:
            info = (
                f"recon {values['loss/recon']:.4f} critic {values['critic/loss']:.3f} "
                f"perplexity {values['memcodes/argmax_perplexity_mean']:.2f} "
                f"{values['speed/clips_per_s']:.1f} clips/s"
            )
            bar.update(completed=step, info=info)

        def warn(message: str) -> None:  # a collapsed Memcode head: loud, above the bar
            console.print(f"[bold red]{message}[/]", highlight=False)

        last = train_dvae(config, data, out, progress=show, warn=warn)
    if is_main_rank():
        # Per-head and per-critic figures stay in TensorBoard; the table keeps the means.
        shown = {k: v for k, v in last.items() if "_head" not in k and k.count("/") < 2}
        print_last(f"dvae: {out}", shown, console, skip="schedule/")
