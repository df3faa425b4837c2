"""The `nwt-train` command line. Training commands arrive with the dVAE and prior work."""

from __future__ import annotations

import typer
from rich.console import Console
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


@app.callback()
def _root() -> None:
    """Train the NWT dVAE-Adv and its autoregressive priors on nwt-data shards."""


def main() -> None:
    app()
