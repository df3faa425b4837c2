"""`nwt-data segment`."""

from __future__ import annotations

from typing import Annotated

import typer

from nwt_data import config as cfg
from nwt_data.cli.common import (
    DEFAULT_WORKSPACE,
    ExecutorOpt,
    RayAddressOpt,
    RetryFailedOpt,
    WorkersOpt,
    WorkspaceOpt,
    execute,
    handle_errors,
    run_config,
)
from nwt_data.errors import ConfigError
from nwt_data.stages.segment import SegmentStage
from nwt_data.workspace import Workspace


@handle_errors
def segment(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    workers: WorkersOpt = None,
    crop: Annotated[
        str | None,
        typer.Option(help="paper (507,8,623,712@1280x720), center, none, X,Y,W,H or X,Y,W,H@WxH."),
    ] = None,
    segment_time: Annotated[float | None, typer.Option(help="ffmpeg -segment_time \\[default: 4].")] = None,
    trim: Annotated[
        float | None, typer.Option(help="Seconds trimmed from each end \\[default: 0.25].")
    ] = None,
    min_duration: Annotated[
        float | None, typer.Option(help="Clips this long or shorter are too short \\[default: 2].")
    ] = None,
    episode: Annotated[list[str] | None, typer.Option("--episode", "-e", help="Only these episodes.")] = None,
    retry_failed: RetryFailedOpt = False,
    redo: Annotated[
        bool,
        typer.Option(help="Segment the --episode ones again (refused once clips are reviewed or sharded)."),
    ] = False,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Split fetched episodes at keyframes (stream copy), record crop box and trim per clip.

    Each clip's exact start and end in the episode, frame count, audio presence and A/V offset go
    to the catalog. Clips of 2 s or less are marked too short; longer ones lose 0.25 s at each end.

    [bold]Example:[/] nwt-data segment --workspace lwt --crop paper
    """
    if redo and not episode:
        raise ConfigError(
            "--redo needs --episode ID (one or more)", hint="name the episodes to segment again"
        )
    ws = Workspace.open(workspace, create=False)
    config = cfg.build(cfg.SegmentConfig, "segment", ws.config_table("segment"),
                       {"workers": workers, "crop": crop, "segment_time": segment_time, "trim": trim,
                        "min_duration": min_duration})  # fmt: skip
    run = run_config(ws, executor, ray_address)
    stage = SegmentStage(ws, config, retry_failed, tuple(episode or ()), redo, run.timeout)
    execute(ws, stage, run)
