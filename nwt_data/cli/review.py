"""`nwt-data review`."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Annotated, Literal

import typer

from nwt_data.catalog import Catalog
from nwt_data.cli.common import DEFAULT_WORKSPACE, WorkspaceOpt, console, err_console, handle_errors
from nwt_data.review.session import (
    ReviewSession,
    accept_unflagged,
    export_decisions,
    import_decisions,
)
from nwt_data.workspace import Workspace

FLAGS = tuple(column.removeprefix("flag_") for column in Catalog.FLAG_COLUMNS)


def default_reviewer() -> str:
    return os.environ.get("NWT_REVIEWER") or getpass.getuser()


@handle_errors
def review(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    reviewer: Annotated[
        str | None, typer.Option(help="Your name in the catalog.", show_default="$NWT_REVIEWER or your login")
    ] = None,
    filter: Annotated[
        Literal["unreviewed", "flagged", "rejected", "all"], typer.Option(help="Start with this queue.")
    ] = "unreviewed",
    flagged_first: Annotated[bool, typer.Option(help="Put clips with automatic flags first.")] = False,
    flag: Annotated[
        Literal[FLAGS] | None,
        typer.Option(metavar="FLAG", help=f"Only clips that raised this automatic flag: {', '.join(FLAGS)}."),
    ] = None,
    export: Annotated[
        Path | None, typer.Option(help="Write all decisions to a .csv or .jsonl file and exit.")
    ] = None,
    import_: Annotated[
        Path | None, typer.Option("--import", help="Apply decisions from a .csv or .jsonl file and exit.")
    ] = None,
    accept_unflagged_: Annotated[
        bool,
        typer.Option(
            "--accept-unflagged", help="Accept every unreviewed clip with no automatic flag and exit."
        ),
    ] = False,
) -> None:
    """Watch each clip in the terminal and accept or reject it (Appendix D step 5).

    Keys: a accept, 1-6 reject with a reason, 7 other (with a note), u undo, n/p next/previous,
    space play, . , step, g jump, f filter, x external player, ? help, q quit. Every decision is
    saved at once; reopening resumes at the first unreviewed clip.

    [bold]Example:[/] nwt-data review --workspace lwt --reviewer ann --flagged-first
    """
    ws = Workspace.open(workspace, create=False)
    catalog = Catalog(ws.catalog_path)
    who = reviewer or default_reviewer()
    if export is not None:
        count = export_decisions(catalog, export)
        console.print(f"exported {count} decisions to {export}")
        return
    if import_ is not None:
        applied, problems = import_decisions(catalog, import_, reviewer)
        console.print(f"imported {applied} decisions from {import_}")
        for problem in problems:
            err_console.print(f"  ✗ {problem}", soft_wrap=True, markup=False)
        raise typer.Exit(1 if problems else 0)
    if accept_unflagged_:
        count = accept_unflagged(catalog, who)
        console.print(f"accepted {count} unreviewed clips without automatic flags (as {who})")
        return
    from nwt_data.review.app import ReviewApp

    session = ReviewSession(catalog, who, filter=filter, flagged_first=flagged_first, only_flag=flag)
    ReviewApp(session, ws.root).run()
    counts = session.counts()
    console.print("review saved: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
