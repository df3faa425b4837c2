"""`nwt-data report`."""

from __future__ import annotations

from typing import Annotated

from nwt_data import config as cfg
from nwt_data.catalog import Catalog
from nwt_data.cli.common import DEFAULT_WORKSPACE, WorkspaceOpt, console, err_console, handle_errors
from nwt_data.cli.options import config_option, given
from nwt_data.stages.report import ReportConfig, build_report
from nwt_data.workspace import Workspace


@handle_errors
def report(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    out: Annotated[str | None, config_option(ReportConfig, "out")] = None,
    sheet_clips: Annotated[int | None, config_option(ReportConfig, "sheet_clips", min=0)] = None,
    seed: Annotated[int | None, config_option(ReportConfig, "seed")] = None,
) -> None:
    """Write the dataset as one self-contained HTML page: plots and contact sheets.

    Clip durations; clips per episode by status, split and review decision; why clips were left out;
    flag rates; masked share of the frame; speech ratio; and a seeded sample of clips, each its middle
    frame with the boxes `nwt-data mask` paints and its flags, linked to the clip file. Images are
    embedded, so the file can be moved (the links to clips are relative to it). Reads only.

    [bold]Example:[/] nwt-data report --workspace lwt --out report.html
    """
    ws = Workspace.open(workspace, create=False)
    mask_config = cfg.build(cfg.MaskConfig, "mask", ws.config_table("mask"), {})
    overrides = given(out=out, sheet_clips=sheet_clips, seed=seed, mask=mask_config)
    config = cfg.build(ReportConfig, "report", ws.config_table("report"), overrides)
    path, problems = build_report(ws, Catalog(ws.catalog_path), config)
    for problem in problems:
        err_console.print(f"  ✗ {problem}", soft_wrap=True, markup=False)
    console.print(f"report: {path}")
