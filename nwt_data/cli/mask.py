"""`nwt-data mask`."""

from __future__ import annotations

from typing import Annotated, Literal

from nwt_data import config as cfg
from nwt_data.cli.common import (
    DEFAULT_WORKSPACE,
    ExecutorOpt,
    RayAddressOpt,
    RetryFailedOpt,
    WorkspaceOpt,
    execute,
    handle_errors,
    run_config,
)
from nwt_data.cli.options import config_option, given
from nwt_data.config import OVERLAY_RULES, MaskConfig
from nwt_data.stages.mask import MaskStage
from nwt_data.workspace import Workspace


@handle_errors
def mask(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    workers: Annotated[int | None, config_option(MaskConfig, "workers", "--workers", "-j", min=1)] = None,
    overlay_rule: Annotated[Literal[OVERLAY_RULES] | None, config_option(MaskConfig, "overlay_rule")] = None,
    spare_set_pieces: Annotated[
        bool | None,
        config_option(MaskConfig, "spare_set_pieces", "--spare-set-pieces/--paint-set-pieces"),
    ] = None,
    threshold: Annotated[int | None, config_option(MaskConfig, "threshold", min=0, max=255)] = None,
    min_area: Annotated[int | None, config_option(MaskConfig, "min_area", min=0)] = None,
    max_area: Annotated[int | None, config_option(MaskConfig, "max_area", min=1)] = None,
    min_height: Annotated[int | None, config_option(MaskConfig, "min_height", min=0)] = None,
    gop: Annotated[int | None, config_option(MaskConfig, "gop", min=1)] = None,
    include_unreviewed: Annotated[
        bool | None,
        config_option(MaskConfig, "include_unreviewed", "--include-unreviewed/--accepted-only"),
    ] = None,
    retry_failed: RetryFailedOpt = False,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Mask overlays, scale to 256x224 at exactly 30 FPS, cut 24 kHz audio and its mel (steps 6-8).

    One decode pass per clip (plus a look at a few sampled frames for the graphic rule): the crop and
    trim recorded by segment, the overlay rule (graphic: panels, insets and captions that stay put
    while the subject moves, less what the episode's clips show as part of the set; paper: the
    paper's heuristic, thresholds in pixels of a 712-row crop, scaled to yours), sample-and-hold
    frame-rate conversion
    that never drifts from the audio. Rejected clips are never prepared.

    [bold]Example:[/] nwt-data mask --workspace lwt
    """
    ws = Workspace.open(workspace, create=False)
    overrides = given(workers=workers, overlay_rule=overlay_rule, spare_set_pieces=spare_set_pieces,
                      threshold=threshold, min_area=min_area,
                      max_area=max_area, min_height=min_height, gop=gop,
                      include_unreviewed=include_unreviewed)  # fmt: skip
    config = cfg.build(MaskConfig, "mask", ws.config_table("mask"), overrides)
    execute(ws, MaskStage(ws, config, retry_failed), run_config(ws, executor, ray_address))
