"""`nwt-data fetch MANIFEST`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nwt_data import config as cfg
from nwt_data.cli.common import (
    DEFAULT_WORKSPACE,
    ExecutorOpt,
    NewWorkspaceOpt,
    RayAddressOpt,
    execute,
    handle_errors,
    run_config,
)
from nwt_data.cli.options import config_option, given
from nwt_data.config import FetchConfig
from nwt_data.manifest import read_manifest
from nwt_data.stages.fetch import FetchStage
from nwt_data.workspace import Workspace


@handle_errors
def fetch(
    manifest: Annotated[Path, typer.Argument(help="CSV with episode_id,url columns (see manifests/).")],
    workspace: NewWorkspaceOpt = DEFAULT_WORKSPACE,
    workers: Annotated[int | None, config_option(FetchConfig, "workers", "--workers", "-j", min=1)] = None,
    retries: Annotated[int | None, config_option(FetchConfig, "retries", min=0)] = None,
    max_height: Annotated[int | None, config_option(FetchConfig, "max_height", min=1)] = None,
    retry_failed: Annotated[bool | None, config_option(FetchConfig, "retry_failed", "--retry-failed")] = None,
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
    overrides = given(workers=workers, retries=retries, max_height=max_height, retry_failed=retry_failed)
    config = cfg.build(FetchConfig, "fetch", ws.config_table("fetch"), overrides)
    run = run_config(ws, executor, ray_address)
    execute(ws, FetchStage(ws, config, parsed, str(manifest.resolve()), run.timeout), run)
