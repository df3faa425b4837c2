"""`nwt-train mnist-study`: options -> StudyConfig -> run_study -> a Rich summary table."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from nwt_data.cli.options import config_option, given
from nwt_train.cli.common import make_config, report_errors
from nwt_train.mnist.config import EXPERIMENTS, FEATURE_MATCHING, StudyConfig

# Typer lists the choices of an Enum (a list of Literals it cannot parse).
Experiment = enum.Enum("Experiment", [(name, name) for name in EXPERIMENTS], type=str)  # type: ignore[misc]
FeatureMatching = enum.Enum("FeatureMatching", [(n, n) for n in FEATURE_MATCHING], type=str)  # type: ignore[misc]


@report_errors
def mnist_study(
    data: Annotated[Path, typer.Option(help="Folder with the four gzipped MNIST IDX files.")],
    out: Annotated[Path, typer.Option(help="Output folder: PNGs, results.md, results.json, models/.")],
    experiment: Annotated[
        list[Experiment] | None, config_option(StudyConfig, "experiments", "--experiment")
    ] = None,
    steps: Annotated[int | None, config_option(StudyConfig, "steps", min=0)] = None,
    train_size: Annotated[int | None, config_option(StudyConfig, "train_size", min=0)] = None,
    test_size: Annotated[int | None, config_option(StudyConfig, "test_size", min=0)] = None,
    batch_size: Annotated[int | None, config_option(StudyConfig, "batch_size", min=1)] = None,
    lr: Annotated[float | None, config_option(StudyConfig, "lr")] = None,
    seed: Annotated[int | None, config_option(StudyConfig, "seed")] = None,
    feature_matching: Annotated[
        FeatureMatching | None, config_option(StudyConfig, "feature_matching")
    ] = None,
    class_weight: Annotated[float | None, config_option(StudyConfig, "class_weight", min=0)] = None,
    critic_warmup: Annotated[int | None, config_option(StudyConfig, "critic_warmup", min=0)] = None,
    classifier_steps: Annotated[int | None, config_option(StudyConfig, "classifier_steps", min=0)] = None,
    threads: Annotated[int | None, config_option(StudyConfig, "threads", min=0)] = None,
    verify_md5: Annotated[
        bool | None, config_option(StudyConfig, "verify_md5", "--verify-md5/--no-verify-md5")
    ] = None,
) -> None:
    """Reproduce Appendix A of the NWT paper on MNIST: Memcodes occupancy, head control, Hamming retrieval.

    Trains small image dVAEs with the shared Memcodes and dVAE-Adv losses on the CPU, then writes the
    figures (PNG), OUT/results.md (ours beside the paper's) and OUT/results.json (config and seeds).

    [bold]Example:[/] nwt-train mnist-study --data /work/shared/mnist --out runs/mnist --experiment a2-class
    """
    from nwt_train.mnist.study import prepare, result_rows, run_study  # torch loads only when the study runs

    console = Console()
    chosen = tuple(e.value for e in experiment) if experiment else None
    options = given(experiments=chosen, steps=steps, train_size=train_size, test_size=test_size,
                    batch_size=batch_size, lr=lr, seed=seed, class_weight=class_weight,
                    feature_matching=feature_matching.value if feature_matching else None,
                    critic_warmup=critic_warmup,
                    classifier_steps=classifier_steps, threads=threads, verify_md5=verify_md5)  # fmt: skip
    config = make_config(lambda: StudyConfig(data=str(data), out=str(out), **options))
    data_tensors = prepare(config)  # data errors surface before any progress bar is drawn
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        tasks: dict[str, TaskID] = {
            name: bar.add_task(name, total=config.steps_of(name), info="", start=False)
            for name in config.experiments
        }

        def show(name: str, completed: int, total: int, info: str) -> None:
            bar.start_task(tasks[name])
            bar.update(tasks[name], completed=completed, total=total, info=info)

        report = run_study(config, progress=show, data=data_tensors)
    table = Table(title=f"mnist-study: {out}", header_style="bold")
    for column, justify in (
        ("experiment", "left"),
        ("metric", "left"),
        ("ours", "right"),
        ("paper", "right"),
    ):
        table.add_column(column, justify=justify)
    for row in result_rows(report):
        table.add_row(*row)
    console.print(table)
    console.print(f"Figures, results.md and results.json are in {out}")
