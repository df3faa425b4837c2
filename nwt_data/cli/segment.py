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
    WorkspaceOpt,
    execute,
    handle_errors,
    redo_option,
    run_config,
)
from nwt_data.cli.options import config_option, given
from nwt_data.config import SegmentConfig
from nwt_data.errors import ConfigError
from nwt_data.stages.segment import SegmentStage
from nwt_data.workspace import Workspace


@handle_errors
def segment(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    workers: Annotated[int | None, config_option(SegmentConfig, "workers", "--workers", "-j", min=1)] = None,
    crop: Annotated[str | None, config_option(SegmentConfig, "crop")] = None,
    segment_time: Annotated[float | None, config_option(SegmentConfig, "segment_time")] = None,
    trim: Annotated[float | None, config_option(SegmentConfig, "trim")] = None,
    min_duration: Annotated[float | None, config_option(SegmentConfig, "min_duration")] = None,
    episode: Annotated[
        list[str] | None, typer.Option("--episode", "-e", help="Only these episodes (repeatable).")
    ] = None,
    retry_failed: RetryFailedOpt = False,
    redo: Annotated[
        bool,
        redo_option("Segment the --episode ones again (refused once their clips are reviewed or sharded)."),
    ] = False,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Split fetched episodes at keyframes (stream copy), record crop box and trim per clip.

    Each clip's exact start and end in the episode, frame count, audio presence and A/V offset go
    to the catalog. Clips of --min-duration or less are marked too short; longer ones lose --trim
    seconds at each end.

    [bold]Example:[/] nwt-data segment --workspace lwt --crop paper
    """
    if redo and not episode:
        raise ConfigError(
            "--redo needs --episode ID (one or more)", hint="name the episodes to segment again"
        )
    ws = Workspace.open(workspace, create=False)
    overrides = given(workers=workers, crop=crop, segment_time=segment_time, trim=trim,
                      min_duration=min_duration)  # fmt: skip
    config = cfg.build(SegmentConfig, "segment", ws.config_table("segment"), overrides)
    run = run_config(ws, executor, ray_address)
    stage = SegmentStage(ws, config, retry_failed, tuple(episode or ()), redo, run.timeout)
    execute(ws, stage, run)
