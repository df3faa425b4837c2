"""`nwt-train describe`: options -> config -> parameters per part, Memcode grid, receptive field."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from nwt_train.cli.common import ConfigFile, Overrides, build_config, choose, report_errors

PARTS = {
    "audio_encoder": "audio encoder",
    "style_encoder": "style encoder",
    "encoder": "encoder",
    "memcodes": "Memcodes",
    "episode_embedding": "episode embedding",
    "decoder": "decoder",
    "critics": "critics",
}


@report_errors
def describe(
    model: Annotated[Literal["dvae", "prior"], typer.Argument(help="The model to describe.")],
    arch: Annotated[
        Literal["far", "mar"], typer.Option(help="prior: far (a frame per step) or mar (a Memcode per step).")
    ] = "far",
    preset: Annotated[Literal["paper", "tiny"], typer.Option(help="The model preset.")] = "paper",
    config_file: ConfigFile = None,
    overrides: Overrides = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the description as JSON.")] = False,
) -> None:
    """Parameters, Memcode grid and receptive field of an untrained model.

    Parameters in total and per part, the grid, the reach in frames.
    The model is built on the meta device (no memory, no initialisation),
    so the paper presets are instant. --set and --config take the same
    overrides as `dvae` and `prior`.

    [bold]Example:[/] nwt-train describe prior --arch mar --preset paper --json
    """
    from nwt_train.config import PRESETS, PRIOR_PRESETS
    from nwt_train.describe import describe_dvae, describe_prior

    if model == "dvae":
        factory = PRESETS[choose("preset", preset, PRESETS)]
        description = describe_dvae(build_config(factory, config_file, overrides))
    else:
        prior_factory = PRIOR_PRESETS[choose("preset", preset, PRIOR_PRESETS)]
        choose("arch", arch, ("far", "mar"))
        description = describe_prior(build_config(lambda: prior_factory(arch), config_file, overrides))
    if as_json:
        typer.echo(json.dumps(description, indent=2))
    else:
        show(description, Console())


def show(d: dict[str, Any], console: Console) -> None:
    name = "dVAE-Adv" if d["model"] == "dvae" else f"prior {d['arch'].upper()}"
    table = Table(title=f"{name}, preset {d['preset']}", header_style="bold")
    table.add_column("part")
    table.add_column("parameters", justify="right")
    counts = d["parameters"]
    for key, label in PARTS.items():
        if key in counts:
            table.add_row(label, f"{counts[key]:,}")
    table.add_row("[bold]total", f"[bold]{counts['total']:,}")
    console.print(table)
    grid = d["memcode_grid"]
    console.print(
        f"Memcode grid {grid['height']}x{grid['width']}, {grid['heads']} heads over "
        f"{grid['codebook_size']} codes"
    )
    field = d["receptive_field"]
    if d["model"] == "dvae":
        console.print(
            f"Receptive field of a Memcode: {field['frames']} frames ({field['frames_before']} before, "
            f"{field['frames_after']} after its own)"
        )
        return
    console.print(f"Decoder grid {'x'.join(map(str, d['decoder_grid']))}, conditioning grid "
                  f"{'x'.join(map(str, d['conditioning_grid']))}")  # fmt: skip
    if field["unit"] == "frames":
        reach = f"{field['positions']} frames"
    else:
        reach = (
            f"{field['positions']:,} Memcodes = {field['frames_exact']:.1f} frames ({field['frames']} whole)"
        )
    console.print(f"Receptive field: {reach}; limit {field['max_frames']} frames")
    paper = d["paper"]
    console.print(
        f"Table 3 ({paper['table']}): {paper['parameters']:,} parameters; this model "
        f"{100 * (paper['ratio'] - 1):+.2f} %"
    )
