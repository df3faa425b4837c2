"""`nwt-train mnist-study`: options -> StudyConfig -> run_study -> a Rich summary table."""

from __future__ import annotations

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

from nwt_train.cli.common import make_config, report_errors
from nwt_train.mnist.config import EXPERIMENTS, StudyConfig


@report_errors
def mnist_study(
    data: Annotated[Path, typer.Option(help="Folder with the four gzipped MNIST IDX files.")],
    out: Annotated[Path, typer.Option(help="Output folder: PNGs, results.md, results.json, models/.")],
    experiment: Annotated[
        list[str] | None,
        typer.Option(help=f"Run only this experiment (repeatable): {', '.join(EXPERIMENTS)}. Default: all."),
    ] = None,
    steps: Annotated[
        int, typer.Option(help="Training updates per model (0: per experiment, 6000 or 3000).")
    ] = StudyConfig.steps,
    train_size: Annotated[
        int, typer.Option(help="First N training images (training, occupancy, 1-NN database); 0: all.")
    ] = StudyConfig.train_size,
    test_size: Annotated[
        int, typer.Option(help="Use the first N test images as queries; 0: all.")
    ] = StudyConfig.test_size,
    batch_size: Annotated[int, typer.Option(help="Images per update.")] = StudyConfig.batch_size,
    lr: Annotated[float, typer.Option(help="Adam learning rate (generator and critic).")] = StudyConfig.lr,
    seed: Annotated[int, typer.Option(help="Study seed; experiment i uses seed + i.")] = StudyConfig.seed,
    critic_warmup: Annotated[
        int, typer.Option(help="Critic updates before the generator's first (adversarial experiments).")
    ] = StudyConfig.critic_warmup,
    classifier_steps: Annotated[
        int, typer.Option(help="a2-pretrained: classifier updates before it is frozen.")
    ] = StudyConfig.classifier_steps,
    threads: Annotated[
        int, typer.Option(help="torch CPU threads (0: torch default; 1 suits a shared 2-core machine).")
    ] = StudyConfig.threads,
    verify_md5: Annotated[
        bool, typer.Option(help="Require the published MD5s of the decompressed MNIST files.")
    ] = StudyConfig.verify_md5,
) -> None:
    """Reproduce Appendix A of the NWT paper on MNIST: Memcodes occupancy, head control, Hamming retrieval.

    Trains small image dVAEs with the shared Memcodes and dVAE-Adv losses on the CPU, then writes the
    figures (PNG), OUT/results.md (ours beside the paper's) and OUT/results.json (config and seeds).

    [bold]Example:[/] nwt-train mnist-study --data /work/shared/mnist --out runs/mnist --experiment a2-class
    """
    from nwt_train.mnist.study import prepare, result_rows, run_study  # torch loads only when the study runs

    console = Console()
    config = make_config(
        lambda: StudyConfig(
            data=str(data),
            out=str(out),
            experiments=tuple(experiment) if experiment else EXPERIMENTS,
            steps=steps,
            train_size=train_size,
            test_size=test_size,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            critic_warmup=critic_warmup,
            classifier_steps=classifier_steps,
            threads=threads,
            verify_md5=verify_md5,
        )
    )
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
