"""`nwt-train eval-dvae`: a trained dVAE's Table 2 columns on a split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from nwt_train.cli.common import report_errors

# Table rows at 80 columns; RUN/eval-SPLIT.json has the long labels.
SHORT = {
    "h264_crf23": "h264 crf 23",
    "memcodes": "Memcodes",
    "memcodes_rle": "Memcodes + RLE",
    "h264_rle_size": "h264 at RLE size",
    "grid": "grid + bilinear",
    "uncompressed": "uncompressed",
}


@report_errors
def eval_dvae(
    run: Annotated[Path, typer.Option(help="A run folder of `nwt-train dvae`.")],
    data: Annotated[Path, typer.Option(help="The shards folder (with dataset.json).")],
    split: Annotated[Literal["train", "val", "test"], typer.Option(help="The split to score.")] = "test",
    chunk: Annotated[
        int | None, typer.Option(help="Frames decoded at a time (default: training window).")
    ] = None,
    max_clips: Annotated[int | None, typer.Option(help="Stop after this many clips.")] = None,
) -> None:
    """Table 2's columns on every frame of a split, beside a grid and an h264 baseline.

    Argmax Memcodes of whole clips, in time chunks with the model's temporal context. On the same
    frames: area-downsampling to the Memcode grid + bilinear upscaling, h264 at the size of the
    run-length-encoded Memcode stream, and h264 at crf 23. Writes RUN/eval-SPLIT.json.

    [bold]Example:[/] nwt-train eval-dvae --run runs/dvae --data ws/shards --split test
    """
    from nwt_train.eval_dvae import evaluate

    result = evaluate(run, data, split=split, chunk=chunk, max_clips=max_clips)
    title = (
        f"eval-dvae {run} (step {result['step']}) on {split}: {result['clips']} clips, {result['frames']} "
        f"frames at {result['frame_size'][0]}x{result['frame_size'][1]}"
    )
    table = Table(title=title, header_style="bold")
    for name in ("method", "bytes", "vs h264", "SSIM", "PSNR dB", "bits/frame"):
        table.add_column(name, justify="left" if name == "method" else "right")
    for key, row in result["methods"].items():
        ssim, psnr = row["frame_ssim"], row["frame_psnr_db"]
        table.add_row(
            SHORT[key],
            f"{row['bytes']:,.0f}",
            f"{row['compression_vs_h264_crf23']:.2f}x",
            "-" if ssim is None else f"{ssim:.4f}",
            "-" if psnr is None else f"{psnr:.2f}",
            f"{row['bits_per_frame']:,.0f}",
        )
    console = Console()
    console.print(table)
    usage = ", ".join(f"{u:.2f}" for u in result["codebook_usage_per_head"])
    console.print(f"codebook usage per head (argmax): {usage}; a code repeats the previous frame's "
                  f"{result['argmax_same_as_previous_frame']:.1%} of the time")  # fmt: skip
