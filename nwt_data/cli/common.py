"""What every command shares: options, consoles, the error-to-message funnel, the summary table."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from nwt_data import config as cfg
from nwt_data import runner
from nwt_data.catalog import Catalog, RunStatus
from nwt_data.cli.options import config_option
from nwt_data.config import RunConfig
from nwt_data.errors import NwtError, from_os_error
from nwt_data.runner import Stage
from nwt_data.stages import StageReport
from nwt_data.workspace import DEFAULT_DIR, ENV_VAR, Workspace

console = Console()
err_console = Console(stderr=True)


def workspace_option(help: str) -> Any:
    """--workspace / -w, or $NWT_WORKSPACE, as every command (the demo too) reads it."""
    return typer.Option("--workspace", "-w", envvar=ENV_VAR, help=help, show_default=True)


WorkspaceOpt = Annotated[Path, workspace_option("Dataset workspace folder, made by `nwt-data fetch`.")]
NewWorkspaceOpt = Annotated[Path, workspace_option("Dataset workspace folder; created when missing.")]
DEFAULT_WORKSPACE = Path(DEFAULT_DIR)

ExecutorOpt = Annotated[Literal[cfg.EXECUTORS] | None, config_option(RunConfig, "executor", "--executor")]
RayAddressOpt = Annotated[str | None, config_option(RunConfig, "ray_address", "--ray-address")]
RetryFailedOpt = Annotated[
    bool, typer.Option("--retry-failed", help="Also retry items that failed in an earlier run.")
]


def redo_option(what: str) -> Any:
    """--redo, one-sided on every stage that can redo work it has done (off unless given)."""
    return typer.Option("--redo", help=what)


F = TypeVar("F", bound=Callable[..., Any])


def error_funnel(os_error_line: Callable[[OSError], str | None], interrupted: str) -> Callable[[F], F]:
    """The one shape of both CLIs' error handling, as a decorator factory.

    Known errors (every `NwtError`, and the OSErrors `os_error_line` turns into a line) print one line on
    stderr and exit 2; anything else keeps its traceback; `NWT_DEBUG=1` shows tracebacks of known
    errors too; Ctrl-C prints `interrupted` and exits 130.
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except NwtError as err:
                if os.environ.get("NWT_DEBUG"):
                    raise
                _error_line(err.one_line())
                raise typer.Exit(2) from None
            except OSError as err:
                line = os_error_line(err)
                if line is None or os.environ.get("NWT_DEBUG"):
                    raise
                _error_line(line)
                raise typer.Exit(2) from None
            except KeyboardInterrupt:
                err_console.print(f"[yellow]interrupted[/]: {interrupted}")
                raise typer.Exit(130) from None

        return wrapper  # type: ignore[return-value]

    return decorate


def _error_line(message: str) -> None:
    err_console.print("[bold red]error:[/] ", end="")
    err_console.print(message, soft_wrap=True, markup=False, highlight=False)


def _disk_full_line(err: OSError) -> str | None:
    known = from_os_error(err)  # a full disk outside any item (shard's tar writer, the catalog)
    return None if known is None else known.one_line()


handle_errors = error_funnel(_disk_full_line, "finished items are saved; run the command again to resume")
"""Turn known errors into one line on stderr (exit 2); NWT_DEBUG=1 shows the traceback."""


def run_config(ws: Workspace, executor: str | None, ray_address: str | None) -> RunConfig:
    """The [run] table of nwt.toml under the command line's --executor / --ray-address."""
    overrides = {"executor": executor, "ray_address": ray_address}
    if ray_address and not executor:
        overrides["executor"] = "ray"
    return cfg.build(RunConfig, "run", ws.config_table("run"), overrides)


def execute(ws: Workspace, stage: Stage[Any, Any], run: RunConfig) -> None:
    """Run a stage through the shared runner (recorded in the catalog's runs table); print the summary."""
    print_report(runner.run_stage(ws, stage, console, run=run))


def run_stage(
    ws: Workspace, command: str, config: dict[str, Any], run: Callable[[Catalog], StageReport]
) -> None:
    """Record and run a stage given as a callable (the demo's way); failed runs are recorded finished."""
    catalog = Catalog(ws.catalog_path)
    run_id = catalog.start_run(command, config)
    try:
        report = run(catalog)
    except BaseException as err:
        message = err.one_line() if isinstance(err, NwtError) else f"{type(err).__name__}: {err}"
        catalog.finish_run(run_id, {}, status=RunStatus.FAILED, error=message.splitlines()[0] or None)
        raise
    catalog.finish_run(run_id, report.counts)
    print_report(report)


def print_report(report: StageReport) -> None:
    """The end-of-run summary: counts, then one line per failure; exit 1 when anything failed."""
    table = Table(title=f"{report.stage} summary", show_header=True, header_style="bold")
    table.add_column("result")
    table.add_column("count", justify="right")
    for name, count in report.counts.items():
        style = "red" if name.startswith(("failed", "episodes failed", "manifest errors")) and count else ""
        table.add_row(name, str(count), style=style)
    console.print(table)
    for warning in report.warnings:
        err_console.print(Text.assemble(("warning: ", "yellow"), warning), soft_wrap=True)
    if report.failures:
        err_console.print(f"[bold red]{len(report.failures)} failed:[/]")
        for item, kind, message in report.failures:
            # One line per item (no hard wrapping), so the list can be grepped.
            err_console.print(Text.assemble(("  ✗ ", "red"), f"{item} [{kind}] {message}"), soft_wrap=True)
        raise typer.Exit(1)
