"""The `nwt-train` command line. Training commands arrive with the dVAE and prior work."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

app = typer.Typer(
    name="nwt-train",
    help="Train the NWT dVAE-Adv and its autoregressive priors on nwt-data shards.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def device_report() -> dict[str, str]:
    """What torch sees on this machine: the facts a training run depends on."""
    import torch

    report = {
        "torch": torch.__version__,
        "cuda available": str(torch.cuda.is_available()),
        "cuda devices": str(torch.cuda.device_count()),
        "cpu threads": str(torch.get_num_threads()),
    }
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        report[f"cuda:{i}"] = f"{props.name}, {props.total_memory / 2**30:.0f} GiB"
    return report


@app.command()
def env() -> None:
    """Show the torch build and the accelerators a training run would use.

    [bold]Example:[/] nwt-train env
    """
    table = Table(title="nwt-train environment", header_style="bold")
    table.add_column("fact")
    table.add_column("value")
    for key, value in device_report().items():
        table.add_row(key, value)
    Console().print(table)


@app.command()
def dvae(
    data: Annotated[Path, typer.Option(help="The shards folder (with dataset.json) of `nwt-data shard`.")],
    out: Annotated[Path, typer.Option(help="Run folder: checkpoints, TensorBoard, config.json. Resumes.")],
    preset: Annotated[str, typer.Option(help="paper (Table 4, C.2.1) or tiny (CPU-sized).")] = "paper",
    config_file: Annotated[
        Path | None, typer.Option("--config", help="TOML file of overrides (top-level keys, [model] table).")
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="KEY=VALUE override, e.g. steps=1000 or model.heads=4.")
    ] = None,
) -> None:
    """Train the dVAE-Adv (Memcodes, critics, WGAN-GP) on CPU, one GPU, or under torchrun.

    The same command runs everywhere: `torchrun --nproc-per-node 8 -m nwt_train.cli dvae ...` trains
    with DDP; rank 0 logs to OUT/tensorboard and saves OUT/latest.pt. Running it again on the same
    OUT resumes; SIGTERM saves before exiting.

    [bold]Example:[/] nwt-train dvae --data ws/shards --out runs/dvae-tiny --preset tiny --set steps=300
    """
    from nwt_train.config import PRESETS, load_overrides, parse_value, with_overrides
    from nwt_train.data import DatasetMismatch
    from nwt_train.train_dvae import RunMismatch, train_dvae

    console = Console()
    try:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; use {' or '.join(PRESETS)}")
        values = load_overrides(config_file) if config_file else {}
        for item in overrides or []:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--set takes KEY=VALUE, not {item!r}")
            values[key.strip()] = parse_value(value.strip())
        config = with_overrides(PRESETS[preset](), values)
        columns = (
            TextColumn("[bold]dvae"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun, rank 0 alone reports
        with Progress(*columns, console=console, disable=not main_rank) as bar:
            task = bar.add_task("dvae", total=config.steps, info="")

            def show(step: int, values: dict[str, float]) -> None:
                info = (
                    f"recon {values['loss/recon']:.4f} "
                    f"critic {values['critic/loss']:.3f} {values['speed/clips_per_s']:.1f} clips/s"
                )
                bar.update(task, completed=step, info=info)

            last = train_dvae(config, data, out, progress=show)
    except (ValueError, FileNotFoundError, RunMismatch, DatasetMismatch) as err:
        Console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if not main_rank:
        return
    table = Table(title=f"dvae: {out}", header_style="bold")
    table.add_column("value")
    table.add_column("last", justify="right")
    for key, value in sorted(last.items()):
        if not key.startswith("codebook/"):
            table.add_row(key, f"{value:.4g}")
    console.print(table)


@app.command("eval-dvae")
def eval_dvae(
    run: Annotated[Path, typer.Option(help="A run folder of `nwt-train dvae`.")],
    data: Annotated[Path, typer.Option(help="The shards folder (with dataset.json).")],
    split: Annotated[str, typer.Option(help="val, test (or train).")] = "test",
    max_windows: Annotated[int | None, typer.Option(help="Stop after this many windows.")] = None,
) -> None:
    """Table 2's columns for a trained dVAE: frame SSIM and PSNR, codebook usage, Memcodes vs h264 size.

    Reconstructions use argmax Memcodes. The Memcode stream is counted raw and run-length encoded
    along time; h264 (crf 23) encodes the same frames at the model's size. Writes RUN/eval-SPLIT.json.

    [bold]Example:[/] nwt-train eval-dvae --run runs/dvae --data ws/shards --split test
    """
    from nwt_train.eval_dvae import evaluate

    try:
        result = evaluate(run, data, split=split, max_windows=max_windows)
    except (ValueError, FileNotFoundError) as err:
        Console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    table = Table(title=f"eval-dvae {run} on {split} ({result['windows']} windows)", header_style="bold")
    table.add_column("model")
    table.add_column("data size (bytes)", justify="right")
    table.add_column("relative compression to h264", justify="right")
    table.add_column("frame SSIM", justify="right")
    table.add_row("h264 (crf 23)", f"{result['h264_bytes']:,}", "1x", "-")
    for name, key, ratio in (
        ("dVAE-Adv Memcodes", "memcodes_bytes", "compression_vs_h264"),
        ("dVAE-Adv Memcodes + RLE", "memcodes_rle_bytes", "compression_vs_h264_rle"),
    ):
        table.add_row(name, f"{result[key]:,.0f}", f"{result[ratio]:.2f}x", f"{result['frame_ssim']:.4f}")
    Console().print(table)
    usage = ", ".join(f"{u:.2f}" for u in result["codebook_usage_per_head"])
    Console().print(f"PSNR {result['frame_psnr_db']:.2f} dB; codebook usage per head: {usage}")


@app.callback()
def _root() -> None:
    """Train the NWT dVAE-Adv and its autoregressive priors on nwt-data shards."""


def main() -> None:
    app()


if __name__ == "__main__":  # torchrun -m nwt_train.cli dvae ...
    main()
