"""`nwt-train demo`: options -> DemoConfig -> run_demo (which prints its own summary table)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from rich.console import Console

from nwt_data.cli.options import config_option, given
from nwt_data.config import SPEECH_ENGINES
from nwt_data.workspace import ENV_VAR
from nwt_train.cli.common import make_config, report_errors
from nwt_train.demo import DemoConfig


@report_errors
def demo(
    workspace: Annotated[
        Path | None, config_option(DemoConfig, "workspace", "--workspace", "-w", envvar=ENV_VAR)
    ] = None,
    dvae_steps: Annotated[int | None, config_option(DemoConfig, "dvae_steps", min=1)] = None,
    prior_steps: Annotated[int | None, config_option(DemoConfig, "prior_steps", min=1)] = None,
    arch: Annotated[Literal["far", "mar"] | None, config_option(DemoConfig, "arch")] = None,
    episodes: Annotated[int | None, config_option(DemoConfig, "episodes", min=2)] = None,
    seconds: Annotated[float | None, config_option(DemoConfig, "seconds", min=8)] = None,
    speech: Annotated[Literal[SPEECH_ENGINES] | None, config_option(DemoConfig, "speech")] = None,
) -> None:
    """The whole mission on generated footage: talking-face episodes in, a generated video out.

    Runs `nwt-data demo` (synthetic talking faces -> fetch, segment, mask, shard), trains the tiny
    dVAE, encodes the clips, trains the tiny prior, generates a video from speech no episode contains,
    writes a PNG sheet of generated frames beside real ones, and reports how closely the generated
    mouth follows that speech. Running it again resumes every step.

    [bold]Example:[/] nwt-train demo --workspace demo-workspace
    """
    from nwt_train.demo import run_demo

    options = given(workspace=workspace, dvae_steps=dvae_steps, prior_steps=prior_steps, arch=arch,
                    episodes=episodes, seconds=seconds, speech=speech)  # fmt: skip
    run_demo(make_config(lambda: DemoConfig(**options)), Console())
