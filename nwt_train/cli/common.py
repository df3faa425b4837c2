"""What the `nwt-train` commands share: the error funnel, config building, progress bars, options."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

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

from nwt_data.cli.common import error_funnel
from nwt_train.errors import TrainConfigError

err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

# Surroundings a command cannot fix by itself but a user can: these few OS errors become one line.
# Any other OSError (and every RuntimeError) is a bug and keeps its traceback.
_ENVIRONMENT_ERRNOS = {
    errno.ENOSPC: "free some space and run it again: finished work is kept",
    errno.EDQUOT: "free some space and run it again: finished work is kept",
    errno.EROFS: "the file system is read-only; use a writable folder",
    errno.EACCES: "check the folder's permissions or use another folder",
    errno.EPERM: "check the folder's permissions or use another folder",
}


def _environment_line(err: OSError) -> str | None:
    hint = _ENVIRONMENT_ERRNOS.get(err.errno or 0)
    if hint is None:
        return None
    where = f"{err.filename}: " if err.filename else ""
    return f"{where}{err.strerror or err} ({hint})"


report_errors = error_funnel(_environment_line, "run the command again to resume")
"""The one place errors become messages: known ones one line on stderr (exit 2), others a traceback.

Known: every `NwtError` (the nwt_data and nwt_train hierarchies), and a full disk, a read-only file
system or a permission refusal. `NWT_DEBUG=1` shows the traceback of known errors too.
"""


ConfigFile = Annotated[
    Path | None,
    typer.Option("--config", help="TOML file of overrides (top-level keys, a \\[model] table)."),
]
Overrides = Annotated[
    list[str] | None,
    typer.Option("--set", help="KEY=VALUE override, e.g. steps=1000 or model.heads=4."),
]
RunFolder = Annotated[
    Path, typer.Option("--out", help="Run folder: checkpoints, TensorBoard, config.json. Resumes.")
]


def make_config(factory: Callable[[], Any]) -> Any:
    """Build a config from user values: its validation errors become a TrainConfigError (one line)."""
    try:
        return factory()
    except TrainConfigError:
        raise
    except (ValueError, TypeError) as err:
        raise TrainConfigError(str(err)) from None


def build_config(factory: Callable[[], Any], config_file: Path | None, overrides: list[str] | None) -> Any:
    """Preset -> TOML overrides -> --set overrides: the effective (validated) config of a run."""
    from nwt_train.config import load_overrides, parse_value, with_overrides

    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            values = load_overrides(config_file)
        except OSError as err:
            raise TrainConfigError(f"cannot read --config {config_file}: {err.strerror or err}") from None
        except ValueError as err:  # tomllib.TOMLDecodeError
            raise TrainConfigError(f"--config {config_file} is not valid TOML: {err}") from None
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise TrainConfigError(f"--set takes KEY=VALUE, not {item!r}")
        values[key.strip()] = parse_value(value.strip())
    return make_config(lambda: with_overrides(factory(), values))


def choose(name: str, value: str, choices: Any) -> str:
    if value not in choices:
        raise TrainConfigError(f"unknown {name} {value!r}; use {' or '.join(choices)}")
    return value


def is_main_rank() -> bool:
    """Under torchrun, rank 0 alone reports."""
    return int(os.environ.get("RANK", "0")) == 0


class LazyBar:
    """One progress bar, drawn at its first update: an input error found before any work prints alone."""

    def __init__(self, progress: Progress, **task: Any) -> None:
        self.progress, self.task_args, self.task = progress, task, None

    def __enter__(self) -> LazyBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.task is not None:
            self.progress.stop()

    def update(self, advance: float | None = None, **fields: Any) -> None:
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task(self.task_args.pop("description", ""), **self.task_args)
        self.progress.update(self.task, advance=advance, **fields)


def lazy_bar(
    name: str, console: Console, *columns: Any, total: float | None = None, **fields: Any
) -> LazyBar:
    """A bar named `name` with the usual columns (or `columns`), drawn on rank 0 only, at first use."""
    columns = columns or (
        TextColumn(f"[bold]{name}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    progress = Progress(*columns, console=console, disable=not is_main_rank())
    return LazyBar(progress, description=name, total=total, **fields)


@contextmanager
def step_bar(
    name: str, console: Console, steps: int, describe: Callable[[dict[str, float]], str]
) -> Iterator[Callable[[int, dict[str, float]], None]]:
    """A training run's bar of `steps`: yields the `progress` callback that moves it to a step and
    shows describe(values) beside it."""
    with lazy_bar(name, console, total=steps, info="") as bar:
        yield lambda step, values: bar.update(completed=step, info=describe(values))


def print_last(title: str, last: dict[str, float], console: Console, skip: str) -> None:
    """A run's last values as a table (on rank 0 alone), leaving out keys that start with `skip`."""
    if not is_main_rank():
        return
    table = Table(title=title, header_style="bold")
    table.add_column("value")
    table.add_column("last", justify="right")
    for key, value in sorted(last.items()):
        if not key.startswith(skip):
            table.add_row(key, f"{value:.4g}")
    console.print(table)
