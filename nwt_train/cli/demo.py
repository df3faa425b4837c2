"""`nwt-train demo`: options -> DemoConfig -> run_demo (which prints its own summary table)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from nwt_train.cli.common import make_config, report_errors


@report_errors
def demo(
    workspace: Annotated[Path, typer.Option("--workspace", "-w", help="Workspace of the demo.")] = Path(
        "demo-workspace"
    ),
    dvae_steps: Annotated[int, typer.Option(min=1, help="Steps of the tiny dVAE.")] = 500,
    prior_steps: Annotated[int, typer.Option(min=1, help="Steps of the tiny prior.")] = 400,
    arch: Annotated[Literal["far", "mar"], typer.Option(help="The prior: far or mar.")] = "far",
    episodes: Annotated[int, typer.Option(min=2, help="Synthetic talking-face episodes.")] = 4,
    seconds: Annotated[float, typer.Option(min=8, help="Seconds per episode.")] = 20.0,
    speech: Annotated[
        Literal["auto", "espeak", "babble"], typer.Option(help="auto: espeak-ng when installed, else babble.")
    ] = "auto",
) -> None:
    """The whole mission on generated footage: talking-face episodes in, a generated video out.

    Runs `nwt-data demo` (synthetic talking faces -> fetch, segment, mask, shard), trains the tiny
    dVAE, encodes the clips, trains the tiny prior, generates a video from speech no episode contains,
    writes a PNG sheet of generated frames beside real ones, and reports how closely the generated
    mouth follows that speech. Running it again resumes every step.

    [bold]Example:[/] nwt-train demo --workspace demo-workspace
    """
    from nwt_train.demo import DemoConfig, run_demo

    config = make_config(
        lambda: DemoConfig(workspace=workspace, dvae_steps=dvae_steps, prior_steps=prior_steps, arch=arch,
                           episodes=episodes, seconds=seconds, speech=speech)
    )  # fmt: skip
    run_demo(config, Console())
