"""The `nwt-train` command line: options -> config -> library call -> summary, errors in one place."""

from __future__ import annotations

import os
import tarfile
import time
from pathlib import Path
from typing import Annotated, Any

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

from nwt_data.errors import NwtError

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


ConfigFile = Annotated[
    Path | None, typer.Option("--config", help="TOML file of overrides (top-level keys, [model] table).")
]
Overrides = Annotated[
    list[str] | None, typer.Option("--set", help="KEY=VALUE override, e.g. steps=1000 or model.channels=64.")
]


# What a run can meet from its inputs and surroundings: bad settings or data (ValueError, which
# RunMismatch and DatasetMismatch are), files (OSError), ffmpeg (NwtError), devices (RuntimeError),
# a diverging loss (FloatingPointError), damaged tars (TarError). Each becomes one line, exit code 2.
USER_ERRORS = (ValueError, OSError, RuntimeError, FloatingPointError, NwtError, tarfile.TarError)


def fail(err: BaseException) -> typer.Exit:
    """The one place a command turns an error into its one-line message (exit code 2)."""
    Console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


def build_config(factory: Any, config_file: Path | None, overrides: list[str] | None) -> Any:
    """Preset -> TOML overrides -> --set overrides: the effective (validated) config of a run."""
    from nwt_train.config import load_overrides, parse_value, with_overrides

    values = load_overrides(config_file) if config_file else {}
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set takes KEY=VALUE, not {item!r}")
        values[key.strip()] = parse_value(value.strip())
    return with_overrides(factory(), values)


def is_main_rank() -> bool:
    """Under torchrun, rank 0 alone reports."""
    return int(os.environ.get("RANK", "0")) == 0


def training_progress(name: str, console: Console) -> Progress:
    columns = (
        TextColumn(f"[bold]{name}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    return Progress(*columns, console=console, disable=not is_main_rank())


def print_last(title: str, last: dict[str, float], console: Console, skip: str) -> None:
    table = Table(title=title, header_style="bold")
    table.add_column("value")
    table.add_column("last", justify="right")
    for key, value in sorted(last.items()):
        if not key.startswith(skip):
            table.add_row(key, f"{value:.4g}")
    console.print(table)


@app.command()
def dvae(
    data: Annotated[Path, typer.Option(help="The shards folder (with dataset.json) of `nwt-data shard`.")],
    out: Annotated[Path, typer.Option(help="Run folder: checkpoints, TensorBoard, config.json. Resumes.")],
    preset: Annotated[str, typer.Option(help="paper (Table 4, C.2.1) or tiny (CPU-sized).")] = "paper",
    config_file: ConfigFile = None,
    overrides: Overrides = None,
) -> None:
    """Train the dVAE-Adv (Memcodes, critics, WGAN-GP) on CPU, one GPU, or under torchrun.

    The same command runs everywhere: `torchrun --nproc-per-node 8 -m nwt_train.cli dvae ...` trains
    with DDP; rank 0 logs to OUT/tensorboard and saves OUT/latest.pt. Running it again on the same
    OUT resumes; SIGTERM saves before exiting.

    [bold]Example:[/] nwt-train dvae --data ws/shards --out runs/dvae-tiny --preset tiny --set steps=300
    """
    from nwt_train.config import PRESETS
    from nwt_train.train_dvae import train_dvae

    console = Console()
    try:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; use {' or '.join(PRESETS)}")
        config = build_config(PRESETS[preset], config_file, overrides)
        with training_progress("dvae", console) as bar:
            task = bar.add_task("dvae", total=config.steps, info="")

            def show(step: int, values: dict[str, float]) -> None:
                info = (
                    f"recon {values['loss/recon']:.4f} "
                    f"critic {values['critic/loss']:.3f} {values['speed/clips_per_s']:.1f} clips/s"
                )
                bar.update(task, completed=step, info=info)

            last = train_dvae(config, data, out, progress=show)
    except USER_ERRORS as err:
        raise fail(err) from None
    if is_main_rank():
        print_last(f"dvae: {out}", last, console, skip="codebook/")


@app.command()
def encode(
    dvae_run: Annotated[Path, typer.Option("--dvae", help="A run folder of `nwt-train dvae` (frozen).")],
    data: Annotated[Path, typer.Option(help="The video shards folder (with dataset.json).")],
    out: Annotated[Path, typer.Option(help="Folder for the Memcode shards and codes.json. Resumes.")],
    seed: Annotated[int, typer.Option(help="Seed of the Memcode sampling (each clip: seed + key).")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
) -> None:
    """Sample every clip's Memcodes once from the frozen dVAE and write Memcode shards for the prior.

    Sampling, not argmax (the paper's footnote 2). Each video shard becomes a Memcode shard of the
    same name (codes, the aligned mel, episode, clip key); codes.json records which dVAE made them.
    Running it again skips the shards already written.

    [bold]Example:[/] nwt-train encode --dvae runs/dvae --data ws/shards --out ws/codes
    """
    from nwt_train.encode import EncodeConfig, encode_shards

    console = Console()
    errors: list[str] = []
    try:
        config = EncodeConfig(dvae=dvae_run, data=data, out=out, seed=seed, device=device)
        columns = (TextColumn("[bold]encode"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn())  # fmt: skip
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("encode", total=None)

            def clip_done(key: str, error: str | None) -> None:
                if error:
                    errors.append(key)
                    console.print(f"[red]✗[/] {key} {error}", highlight=False)
                bar.advance(task)

            description = encode_shards(
                config, on_start=lambda n: bar.update(task, total=n), on_clip=clip_done
            )
    except USER_ERRORS as err:
        raise fail(err) from None
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
            f"[red]{len(errors)} clip(s) failed[/]; their shards ({missing}) were not kept. Fix the clips "
            "(or reject them in `nwt-data review` and run `nwt-data shard`), then run encode again"
        )
        raise typer.Exit(1)


@app.command()
def prior(
    data: Annotated[
        Path, typer.Option(help="The Memcode shards folder (with codes.json) of `nwt-train encode`.")
    ],
    out: Annotated[Path, typer.Option(help="Run folder: checkpoints, TensorBoard, config.json. Resumes.")],
    arch: Annotated[str, typer.Option(help="far (a frame per step) or mar (a Memcode per step).")] = "far",
    preset: Annotated[str, typer.Option(help="paper (Tables 5/6, C.2.2) or tiny (CPU-sized).")] = "paper",
    config_file: ConfigFile = None,
    overrides: Overrides = None,
) -> None:
    """Train the FAR or MAR prior p(z | audio) on Memcode shards (cross-entropy + style KL).

    Same run folder contract as `dvae`: torchrun for DDP, rank 0 logs to OUT/tensorboard and saves
    OUT/latest.pt; running it again resumes; SIGTERM saves before exiting.

    [bold]Example:[/] nwt-train prior --data ws/codes --out runs/far --arch far --preset tiny
    """
    from nwt_train.config import PRIOR_PRESETS
    from nwt_train.train_prior import train_prior

    console = Console()
    try:
        if preset not in PRIOR_PRESETS:
            raise ValueError(f"unknown preset {preset!r}; use {' or '.join(PRIOR_PRESETS)}")
        if arch not in ("far", "mar"):
            raise ValueError(f"unknown arch {arch!r}; use far or mar")
        config = build_config(lambda: PRIOR_PRESETS[preset](arch), config_file, overrides)
        with training_progress(arch, console) as bar:
            task = bar.add_task(arch, total=config.steps, info="")

            def show(step: int, values: dict[str, float]) -> None:
                info = (
                    f"ce {values['loss/ce']:.3f} (uniform {values['ce/uniform']:.3f}) "
                    f"kl {values['loss/kl']:.2f} {values['speed/clips_per_s']:.1f} clips/s"
                )
                bar.update(task, completed=step, info=info)

            last = train_prior(config, data, out, progress=show)
    except USER_ERRORS as err:
        raise fail(err) from None
    if is_main_rank():
        print_last(f"prior ({arch}): {out}", last, console, skip="ce/head")


def parse_style_values(items: list[str] | None) -> tuple[tuple[int, float], ...]:
    values = []
    for item in items or []:
        variate, sep, value = item.partition("=")
        try:
            values.append((int(variate), float(value)))
        except ValueError:
            sep = ""
        if not sep:
            raise ValueError(f"--style-set takes VARIATE=VALUE such as 3=1.5, not {item!r}")
    return tuple(values)


@app.command()
def generate(
    prior_run: Annotated[Path, typer.Option("--prior", help="A run folder of `nwt-train prior`.")],
    dvae_run: Annotated[Path, typer.Option("--dvae", help="The dVAE run whose Memcodes the prior learned.")],
    audio: Annotated[Path, typer.Option(help="Speech: any audio or video file ffmpeg reads.")],
    episode: Annotated[str, typer.Option(help="Episode id (as in the manifest) whose look to use.")],
    out: Annotated[Path, typer.Option(help="The MP4 to write (a .json summary is written beside it).")],
    temperature: Annotated[float, typer.Option(help="Softmax temperature of the sampling.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the style draw and the Memcode sampling.")] = 0,
    style_from: Annotated[
        Path | None, typer.Option(help="Copy the style of this clip (z_l from its posterior).")
    ] = None,
    style_set: Annotated[
        list[str] | None, typer.Option(help="VARIATE=VALUE: fix one variate of z_l, e.g. 3=2.0.")
    ] = None,
    seconds: Annotated[float | None, typer.Option(help="Use only the first SECONDS of the audio.")] = None,
    cache: Annotated[bool, typer.Option(help="Cached incremental sampling (off: recompute, slow).")] = True,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
) -> None:
    """Generate video from speech: mel -> Memcodes (prior) -> frames (dVAE) -> MP4 with the audio.

    Style control (Section 3.5): by default z_l is drawn from N(0, I); --style-set fixes chosen
    variates; --style-from copies a reference clip's style. Episode control (3.4) with --episode.

    [bold]Example:[/] nwt-train generate --prior runs/far --dvae runs/dvae --audio speech.wav
    --episode ep01 --out clip.mp4
    """
    from nwt_train.generate import GenerateConfig
    from nwt_train.generate import generate as run_generate

    console = Console()
    try:
        config = GenerateConfig(
            prior=prior_run, dvae=dvae_run, audio=audio, out=out, episode=episode, temperature=temperature,
            seed=seed, style_from=style_from, style_values=parse_style_values(style_set), seconds=seconds,
            cache=cache, device=device,
        )  # fmt: skip
        columns = (TextColumn("[bold]generate"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[speed]}"), TimeElapsedColumn())  # fmt: skip
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("generate", total=None, speed="")
            clock = {"start": 0.0}

            def frame_done(done: int, total: int) -> None:
                now = time.perf_counter()
                if done == 1:
                    clock["start"] = now
                rate = (done - 1) / (now - clock["start"]) if done > 1 else 0.0
                bar.update(task, completed=done, total=total, speed=f"{rate:.1f} frames/s")

            summary = run_generate(config, on_frame=frame_done)
    except USER_ERRORS as err:
        raise fail(err) from None
    console.print(
        f"[green]✓[/] {summary['out']}: {summary['frames']} frames ({summary['seconds']:.2f} s at 30 FPS), "
        f"{summary['arch'].upper()} sampled {summary['frames_per_s']:.1f} frames/s, style {summary['style']}"
    )


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
    except USER_ERRORS as err:
        raise fail(err) from None
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


# Appendix A on MNIST (nwt_train/mnist).
from nwt_train.mnist.command import mnist_study  # noqa: E402

app.command("mnist-study")(mnist_study)


@app.callback()
def _root() -> None:
    """Train the NWT dVAE-Adv and its autoregressive priors on nwt-data shards."""


def main() -> None:
    app()


if __name__ == "__main__":  # torchrun -m nwt_train.cli dvae ...
    main()
