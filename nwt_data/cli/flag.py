"""`nwt-data flag`."""

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
from nwt_data.stages.flags import FlagConfig, FlagStage
from nwt_data.workspace import Workspace


@handle_errors
def flag(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    workers: WorkersOpt = None,
    sample_fps: Annotated[
        float | None, typer.Option(help="Frames per second sampled for faces and overlays \\[default: 4].")
    ] = None,
    min_face: Annotated[
        float | None, typer.Option(help="Smallest face counted, share of the crop height \\[default: 0.08].")
    ] = None,
    small_face: Annotated[
        float | None,
        typer.Option(help="A face shorter than this share of the crop is small \\[default: 0.15]."),
    ] = None,
    low_speech: Annotated[
        float | None, typer.Option(help="Speech ratio below which a clip is low_speech \\[default: 0.4].")
    ] = None,
    cut_threshold: Annotated[
        float | None, typer.Option(help="Frame change (0-1) that counts as a cut \\[default: 0.35].")
    ] = None,
    silence_db: Annotated[
        float | None, typer.Option(help="Speech-band level (dBFS) of a voiced 50 ms window \\[default: -45].")
    ] = None,
    min_voiced: Annotated[
        float | None, typer.Option(help="A clip with a smaller voiced share is silent \\[default: 0.1].")
    ] = None,
    overlay: Annotated[
        bool | None, typer.Option("--overlay/--no-overlay", help="Raise the overlay flag \\[default: yes].")
    ] = None,
    retry_failed: RetryFailedOpt = False,
    redo: Annotated[
        bool, typer.Option("--redo", help="Flag every usable clip again (e.g. after changing thresholds).")
    ] = False,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Automatic pre-flags for review: no face, a small face or several, a cut, an overlay, silence,
    no or little speech.

    Computed per usable clip on its kept, cropped window, with no model download: OpenCV's bundled
    Haar face cascade on sampled frames, colour-and-structure change between frames, the overlay
    rule `nwt-data mask` uses (with the workspace's [mask] settings; OCR text detection from the
    rapidocr wheel), the speech-band level of the audio and the Silero VAD from its wheel. The review
    queue sorts and filters on the flags (`review --flag no_speech`), and clips with no flag can be
    accepted in bulk.

    [bold]Example:[/] nwt-data flag --workspace lwt
    """
    ws = Workspace.open(workspace, create=False)
    mask_config = cfg.build(cfg.MaskConfig, "mask", ws.config_table("mask"), {})
    overrides = {
        "workers": workers,
        "sample_fps": sample_fps,
        "min_face": min_face,
        "small_face": small_face,
        "low_speech": low_speech,
        "cut_threshold": cut_threshold,
        "silence_db": silence_db,
        "min_voiced": min_voiced,
        "overlay": overlay,
        "mask": mask_config,
    }
    table = ws.config_table("flags")
    if "mask" in table:
        raise ConfigError(
            "the [flags] table of nwt.toml has a `mask` key",
            hint="set the overlay thresholds in the [mask] table; the flag uses what `nwt-data mask` uses",
        )
    config = cfg.build(FlagConfig, "flags", table, overrides)
    execute(ws, FlagStage(ws, config, retry_failed, redo), run_config(ws, executor, ray_address))
