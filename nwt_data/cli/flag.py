"""`nwt-data flag`."""

from __future__ import annotations

from typing import Annotated

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
from nwt_data.errors import ConfigError
from nwt_data.stages.flags import FlagConfig, FlagStage
from nwt_data.workspace import Workspace


@handle_errors
def flag(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    workers: Annotated[int | None, config_option(FlagConfig, "workers", "--workers", "-j", min=1)] = None,
    sample_fps: Annotated[float | None, config_option(FlagConfig, "sample_fps")] = None,
    face_fps: Annotated[float | None, config_option(FlagConfig, "face_fps")] = None,
    min_face: Annotated[float | None, config_option(FlagConfig, "min_face")] = None,
    small_face: Annotated[float | None, config_option(FlagConfig, "small_face")] = None,
    no_speech: Annotated[float | None, config_option(FlagConfig, "no_speech")] = None,
    low_speech: Annotated[float | None, config_option(FlagConfig, "low_speech")] = None,
    cut_threshold: Annotated[float | None, config_option(FlagConfig, "cut_threshold")] = None,
    silence_db: Annotated[float | None, config_option(FlagConfig, "silence_db")] = None,
    min_voiced: Annotated[float | None, config_option(FlagConfig, "min_voiced")] = None,
    overlay: Annotated[bool | None, config_option(FlagConfig, "overlay", "--overlay/--no-overlay")] = None,
    retry_failed: RetryFailedOpt = False,
    redo: Annotated[
        bool, redo_option("Flag every usable clip again (e.g. after changing thresholds).")
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
    overrides = given(workers=workers, sample_fps=sample_fps, face_fps=face_fps, min_face=min_face,
                      small_face=small_face, no_speech=no_speech, low_speech=low_speech,
                      cut_threshold=cut_threshold, silence_db=silence_db, min_voiced=min_voiced,
                      overlay=overlay, mask=mask_config)  # fmt: skip
    table = ws.config_table("flags")
    if "mask" in table:
        raise ConfigError(
            "the [flags] table of nwt.toml has a `mask` key",
            hint="set the overlay thresholds in the [mask] table; the flag uses what `nwt-data mask` uses",
        )
    config = cfg.build(FlagConfig, "flags", table, overrides)
    execute(ws, FlagStage(ws, config, retry_failed, redo), run_config(ws, executor, ray_address))
