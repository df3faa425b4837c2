"""`nwt-data fetch MANIFEST`."""

from __future__ import annotations

from pathlib import Path
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
from nwt_data.manifest import read_manifest
from nwt_data.stages.fetch import FetchStage
from nwt_data.workspace import Workspace


@handle_errors
def fetch(
    manifest: Annotated[Path, typer.Argument(help="CSV with episode_id,url columns (see manifests/).")],
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    workers: WorkersOpt = None,
    retries: Annotated[int | None, typer.Option(min=0, help="Retries of throttled/network failures.")] = None,
    max_height: Annotated[
        int | None, typer.Option(min=1, help="Preferred video height \\[default: 720].")
    ] = None,
    retry_failed: RetryFailedOpt = False,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Download (yt-dlp) or copy every episode of MANIFEST into the workspace.

    Asks for one muxed H.264/AAC MP4 at 720p where the site offers it; records size, sha256, yt-dlp
    version and probe facts. Safe to interrupt and run again: finished episodes are skipped and
    partial downloads continue.

    [bold]Example:[/] nwt-data fetch manifests/example.csv --workspace lwt
    """
    parsed = read_manifest(manifest)  # a mistyped path must not create a workspace
    ws = Workspace.open(workspace)
    config = cfg.build(cfg.FetchConfig, "fetch", ws.config_table("fetch"),
                       {"workers": workers, "retries": retries, "max_height": max_height,
                        "retry_failed": retry_failed or None})  # fmt: skip
    run = run_config(ws, executor, ray_address)
    execute(ws, FetchStage(ws, config, parsed, str(manifest.resolve()), run.timeout), run)
