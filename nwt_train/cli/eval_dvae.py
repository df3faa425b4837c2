"""`nwt-train eval-dvae`: a trained dVAE's Table 2 columns on a split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from nwt_train.cli.common import report_errors


@report_errors
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

    result = evaluate(run, data, split=split, max_windows=max_windows)
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
