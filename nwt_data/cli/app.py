"""The root `nwt-data` app: it only registers the commands."""

from __future__ import annotations

import typer

from nwt_data.cli import demo, fetch, flag, mask, report, review, segment, shard, status
from nwt_data.helptext import tidy

app = typer.Typer(
    name="nwt-data",
    help="Turn talking-person footage into NWT training data (Appendix D of the NWT paper).\n\n"
    "Every command works on a workspace folder (--workspace or NWT_WORKSPACE) that holds nwt.toml and "
    "the catalog.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("fetch")(fetch.fetch)
app.command("segment")(segment.segment)
app.command("flag")(flag.flag)
app.command("review")(review.review)
app.command("mask")(mask.mask)
app.command("shard")(shard.shard)
app.command("status")(status.status)
app.command("report")(report.report)
app.command("demo")(demo.demo)

tidy(app)  # help that reads well at 80 columns


def main() -> None:
    app()
