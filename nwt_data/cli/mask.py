"""`nwt-data mask`."""

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
from nwt_data.stages.mask import MaskStage
from nwt_data.workspace import Workspace


@handle_errors
def mask(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    workers: WorkersOpt = None,
    overlay_rule: Annotated[
        str | None,
        typer.Option(
            help="graphic: mask only rectangular, static overlays and captions; paper: Appendix D step 6 "
            "exactly \\[default: graphic]."
        ),
    ] = None,
    threshold: Annotated[int | None, typer.Option(help="Binarisation threshold \\[default: 185].")] = None,
    min_area: Annotated[int | None, typer.Option(help="Smallest overlay box area \\[default: 4000].")] = None,
    max_area: Annotated[
        int | None, typer.Option(help="Largest overlay box area \\[default: 100000].")
    ] = None,
    min_height: Annotated[
        int | None, typer.Option(help="Smallest overlay box height \\[default: 80].")
    ] = None,
    gop: Annotated[
        int | None, typer.Option(min=1, help="Keyframe interval of the stored video \\[default: 10].")
    ] = None,
    include_unreviewed: Annotated[
        bool | None,
        typer.Option(
            "--include-unreviewed/--accepted-only",
            help="Also prepare unreviewed clips, not only accepted ones \\[default: no].",
        ),
    ] = None,
    retry_failed: RetryFailedOpt = False,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Mask overlays, scale to 256x224 at exactly 30 FPS, cut 24 kHz audio and its mel (steps 6-8).

    One decode pass per clip (plus a look at a few sampled frames for the graphic rule): the crop and
    trim recorded by segment, the overlay rule (graphic: panels, insets and captions that stay put
    while the subject moves; paper: the paper's heuristic, thresholds in pixels of a 712-row crop,
    scaled to yours), sample-and-hold frame-rate conversion
    that never drifts from the audio. Rejected clips are never prepared.

    [bold]Example:[/] nwt-data mask --workspace lwt
    """
    ws = Workspace.open(workspace, create=False)
    overrides = {
        "workers": workers,
        "overlay_rule": overlay_rule,
        "threshold": threshold,
        "min_area": min_area,
        "max_area": max_area,
        "min_height": min_height,
        "gop": gop,
        "include_unreviewed": include_unreviewed,
    }
    config = cfg.build(cfg.MaskConfig, "mask", ws.config_table("mask"), overrides)
    execute(ws, MaskStage(ws, config, retry_failed), run_config(ws, executor, ray_address))
