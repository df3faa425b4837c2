"""`nwt-train encode`: options -> EncodeConfig -> encode_shards -> a table of shards and clips."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from nwt_data.cli.options import config_option, given
from nwt_train.cli.common import lazy_bar, make_config, report_errors
from nwt_train.command_config import EncodeConfig


@report_errors
def encode(
    dvae_run: Annotated[Path, typer.Option("--dvae", help="A run folder of `nwt-train dvae` (frozen).")],
    data: Annotated[Path, typer.Option(help="The video shards folder (with dataset.json).")],
    out: Annotated[Path, typer.Option(help="Folder for the Memcode shards and codes.json. Resumes.")],
    seed: Annotated[int | None, config_option(EncodeConfig, "seed")] = None,
    device: Annotated[str | None, config_option(EncodeConfig, "device")] = None,
) -> None:
    """Sample every clip's Memcodes once from the frozen dVAE and write Memcode shards for the prior.

    Sampling, not argmax (the paper's footnote 2). Each video shard becomes a Memcode shard of the
    same name (codes, the aligned mel, episode, clip key); codes.json records which dVAE made them.
    Running it again skips the shards already written.

    [bold]Example:[/] nwt-train encode --dvae runs/dvae --data ws/shards --out ws/codes
    """
    from nwt_train.encode import encode_shards

    console = Console()
    errors: list[str] = []
    options = given(seed=seed, device=device)
    config = make_config(lambda: EncodeConfig(dvae=dvae_run, data=data, out=out, **options))
    columns = (TextColumn("[bold]encode"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())  # fmt: skip
    with lazy_bar("encode", console, *columns) as bar:

        def clip_done(key: str, error: str | None) -> None:
            if error:
                errors.append(key)
                # One line per failure (no hard wrapping), so the list can be grepped.
                console.print(Text.assemble(("✗ ", "red"), f"{key} {error}"), soft_wrap=True)
            bar.update(advance=1)

        description = encode_shards(config, on_start=lambda n: bar.update(total=n), on_clip=clip_done)
    table = Table(title=f"encode: {out}", header_style="bold")
    for column in ("split", "shards", "clips"):
        table.add_column(column, justify="right" if column != "split" else "left")
    for split, count in sorted(description["samples"].items()):
        shards = sum(1 for s in description["shards"] if s["split"] == split)
        table.add_row(split, str(shards), str(count))
    console.print(table)
    grid = "x".join(map(str, description["grid"]))
    console.print(
        f"Memcodes {grid} x {description['heads']} heads from dVAE step {description['dvae']['step']}"
    )
    if errors or not description["complete"]:
        missing = ", ".join(description["incomplete_shards"])
        console.print(
            f"[red]{len(errors)} clip(s) or shard(s) failed[/]; their shards ({missing}) were not kept. "
            "Fix them (or reject the clips in `nwt-data review` and run `nwt-data shard`), then run "
            "encode again"
        )
        raise typer.Exit(1)
