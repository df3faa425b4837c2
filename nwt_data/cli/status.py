"""`nwt-data status`."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from nwt_data.catalog import Catalog
from nwt_data.cli.common import DEFAULT_WORKSPACE, WorkspaceOpt, console, handle_errors
from nwt_data.workspace import Workspace


def stage_counts(catalog: Catalog) -> dict[str, dict[str, int]]:
    """Per-stage counts: episodes by fetch and segment status, clips by status and review."""
    review_rows = catalog.conn.execute(
        "SELECT COALESCE(review, 'unreviewed'), COUNT(*) FROM clips WHERE status = 'ok' GROUP BY 1"
    )
    review = {str(k): int(n) for k, n in review_rows}
    fetch_failed = catalog.conn.execute(
        "SELECT fetch_error_kind AS k, COUNT(*) AS n FROM episodes WHERE fetch_status = 'failed'"
        " GROUP BY fetch_error_kind"
    )
    fetch = catalog.counts("episodes", "fetch_status")
    fetch.pop("failed", None)
    fetch.update({f"failed ({r['k']})": int(r["n"]) for r in fetch_failed})
    ok = "status = 'ok' AND (review IS NULL OR review = 'accepted')"
    mask = catalog.conn.execute(f"SELECT mask_status, COUNT(*) FROM clips WHERE {ok} GROUP BY mask_status")
    shard = catalog.conn.execute(
        "SELECT split, COUNT(*) FROM clips WHERE shard IS NOT NULL GROUP BY split"
    ).fetchall()
    return {
        "fetch (episodes)": fetch,
        "segment (episodes)": catalog.counts("episodes", "segment_status"),
        "clips": catalog.counts("clips", "status"),
        "review (usable clips)": review,
        "mask (usable clips)": {str(k): int(n) for k, n in mask},
        "shard (clips)": {str(k): int(n) for k, n in shard},
    }


@handle_errors
def status(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Print per-stage counts of the workspace's episodes and clips.

    [bold]Example:[/] nwt-data status --workspace lwt
    """
    ws = Workspace.open(workspace, create=False)
    counts = stage_counts(Catalog(ws.catalog_path))
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
