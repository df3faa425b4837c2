"""`nwt-train env`: the torch build and accelerators a run would use."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


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
