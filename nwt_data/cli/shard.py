"""`nwt-data shard`."""

from __future__ import annotations

from typing import Annotated

import typer

from nwt_data import config as cfg
from nwt_data.cli.common import (
    DEFAULT_WORKSPACE,
    ExecutorOpt,
    RayAddressOpt,
    WorkspaceOpt,
    console,
    execute,
    handle_errors,
    run_config,
)
from nwt_data.cli.options import config_option, given
from nwt_data.config import ShardConfig
from nwt_data.curation.splits import parse_ratios, ratios_text
from nwt_data.stages.shard import ShardStage
from nwt_data.workspace import Workspace


@handle_errors
def shard(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    shard_size: Annotated[str | None, config_option(ShardConfig, "shard_size")] = None,
    seed: Annotated[int | None, config_option(ShardConfig, "seed")] = None,
    split_ratios: Annotated[
        str | None,
        typer.Option(
            help="train,val,test shares (percent) of newly split clips, e.g. 80,10,10: sets val_fraction "
            "and test_fraction.",
            show_default=ratios_text(ShardConfig()),
        ),
    ] = None,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Split prepared clips 90/5/5 inside every episode and pack them into WebDataset shards.

    On small datasets the shares round to nothing per episode, so val and test are topped up over the
    whole dataset: never empty once it has 3 clips. Episodes left with no train clip are named.

    Writes WORKSPACE/shards/{train,val,test}-NNNNNN.tar and dataset.json (episode-to-index map,
    every shard with its sample count and sha256, the video and mel parameters). Incremental:
    finished shards are never rewritten, and a clip's split never changes.

    [bold]Example:[/] nwt-data shard --workspace lwt --shard-size 1GB
    """
    ws = Workspace.open(workspace, create=False)
    overrides = given(shard_size=shard_size, seed=seed)
    if split_ratios is not None:
        _, overrides["val_fraction"], overrides["test_fraction"] = parse_ratios(split_ratios)
    config = cfg.build(ShardConfig, "shard", ws.config_table("shard"), overrides)
    execute(ws, ShardStage(ws, config), run_config(ws, executor, ray_address))
    console.print(f"dataset: {ws.shards_dir / 'dataset.json'}")
