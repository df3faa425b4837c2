"""`nwt-data status`."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from nwt_data.catalog import Catalog
from nwt_data.cli.common import DEFAULT_WORKSPACE, WorkspaceOpt, console, handle_errors
from nwt_data.workspace import Workspace


@handle_errors
def status(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Print per-stage counts of the workspace's episodes and clips.

    [bold]Example:[/] nwt-data status --workspace lwt
    """
    ws = Workspace.open(workspace, create=False, read_only=True)
    counts = Catalog(ws.catalog_path, read_only=True).stage_counts()
    if as_json:
        print(json.dumps(counts, indent=2, sort_keys=True))
        return
    table = Table(title=f"workspace {ws.root}", header_style="bold")
    table.add_column("stage")
    table.add_column("status")
    table.add_column("count", justify="right")
    for stage, values in counts.items():
        if not values:
            table.add_row(stage, "-", "0")
        for i, (name, count) in enumerate(sorted(values.items())):
            table.add_row(stage if i == 0 else "", name, str(count))
    console.print(table)
