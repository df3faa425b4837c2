"""The run skeleton every stage shares, written once.

A stage (fetch, segment, flag, mask, shard) declares four things: what it selects, the work for one
item (a function of the item and the stage's frozen config that returns a result or raises a typed
`NwtError`), how a result or a failure is committed to the catalog, and which data it reads and
rewrites. `run_stage` does the rest for all of them: the stage lock and the cross-stage data locks,
the run record (finished, failed or, when a later run finds it dead, killed), items already done and
earlier failures, the distribution of the work (`nwt_data.executors`: threads, processes or Ray
tasks), the progress bar, and the summary the CLI prints.

Only the process calling `run_stage` (the driver) writes the catalog; workers return values.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from nwt_data.catalog import Catalog, Failure, RunStatus
from nwt_data.config import RunConfig, to_dict
from nwt_data.errors import NwtError, from_os_error
from nwt_data.stages import StageReport
from nwt_data.workspace import Workspace

I = TypeVar("I")  # noqa: E741 - an item
T = TypeVar("T")  # a result


@dataclass(frozen=True)
class Outcome(Generic[T]):
    key: str
    value: T | None = None
    error: NwtError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def call_item(work: Callable[[Any], T], key: str, item: Any) -> Outcome[T]:
    """Run one item's work where it is executed (a thread, a process, a Ray worker): errors are values."""
    try:
        return Outcome(key, value=work(item))
    except NwtError as err:
        return Outcome(key, error=err)
    except Exception as err:  # a bug or an unforeseen library error: record it, keep going
        known = from_os_error(err) if isinstance(err, OSError) else None
        if known is not None:  # a full disk: what to do, not a raw OSError
            return Outcome(key, error=known)
        if os.environ.get("NWT_DEBUG"):
            traceback.print_exc()
        message = f"{type(err).__name__}: {err}".splitlines()[0]
        return Outcome(key, error=NwtError(message, hint="set NWT_DEBUG=1 for the traceback"))


@dataclass(frozen=True)
class Resources:
    """What one item's work needs, declared to Ray (and used to size local pools)."""

    cpus: float = 1.0
    memory_mb: int = 0  # 0: not declared


@dataclass
class Selection(Generic[I]):
    """What a stage's run will do: the items to work on, and what earlier runs already did."""

    items: list[tuple[str, I]]
    done: int | None = None  # items finished earlier (None: the stage does not count them)
    failed_earlier: list[Failure] = field(default_factory=list)  # not retried in this run


class Stage(Generic[I, T]):
    """One pipeline stage. Subclasses are frozen dataclasses: they travel to workers with the work."""

    name: ClassVar[str]
    done_label: ClassVar[str] = "already done"
    failed_label: ClassVar[str] = "failed"
    resources: ClassVar[Resources] = Resources(cpus=1, memory_mb=1024)
    # The kinds of data a run reads and rewrites (episodes, clips, prepared, shards): the
    # cross-stage locks, so that no stage rewrites what a running one reads.
    reads: ClassVar[frozenset[str]] = frozenset()
    rewrites: ClassVar[frozenset[str]] = frozenset()
    config: Any  # the command's frozen config dataclass
    # How the local executor runs this stage's items ("threads" or "processes"): the faster one,
    # measured by benchmarks/bench_ray.py.
    local_mode: ClassVar[str] = "threads"

    # --- declared by each stage -------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        """The effective config, saved with the run record."""
        return to_dict(self.config)

    def data_access(self) -> tuple[set[str], set[str]]:
        """(the kinds of data this run reads, those it rewrites): the cross-stage locks."""
        return set(self.reads), set(self.rewrites)

    def workers(self) -> int:
        return int(getattr(self.config, "workers", 1))

    def prepare(self, catalog: Catalog) -> None:
        """Clear what a killed run left (called under the locks, before selecting)."""

    def select(self, catalog: Catalog, report: StageReport) -> Selection[I]:
        raise NotImplementedError

    def site(self, item: I) -> str | None:
        """Items of one site share the per-site concurrency limit (fetch); None: no limit."""
        return None

    def work(self, item: I) -> T:
        raise NotImplementedError

    def commit(self, catalog: Catalog, key: str, result: T, report: StageReport) -> None:
        raise NotImplementedError

    def record_failure(self, catalog: Catalog, key: str, error: NwtError) -> None:
        raise NotImplementedError

    def failure_label(self, error: NwtError) -> str:
        return self.failed_label

    def finish(self, catalog: Catalog, report: StageReport) -> None:
        """After the last item (shard writes dataset.json here)."""


def run_stage(ws: Workspace, stage: Stage[Any, Any], console: Console, *, catalog: Catalog | None = None,
              run: RunConfig | None = None, record: bool = True) -> StageReport:  # fmt: skip
    """Run `stage` on `ws`: locks, run record, selection, distributed work, commits, summary counts."""
    from nwt_data.executors import make_executor

    run = run or RunConfig()
    catalog = catalog or Catalog(ws.catalog_path)
    report = StageReport(stage.name)
    reads, rewrites = stage.data_access()
    with ws.stage_lock(stage.name), ws.data_locks(_command(stage), reads=reads, rewrites=rewrites):
        # A run refused by a lock leaves no record; from here on every run ends finished or failed.
        catalog.mark_killed_runs(stage.name)
        run_id = (
            catalog.start_run(stage.name, {**stage.config_dict(), "run": _run_dict(run)}) if record else 0
        )
        try:
            _run_locked(ws, stage, console, catalog, run, report, make_executor)
        except BaseException as err:
            if run_id:
                status = RunStatus.FAILED
                message = err.one_line() if isinstance(err, NwtError) else f"{type(err).__name__}: {err}"
                catalog.finish_run(
                    run_id, report.counts, status=status, error=message.splitlines()[0] or None
                )
            raise
        if run_id:
            catalog.finish_run(run_id, report.counts)
    return report


def _run_locked(ws: Workspace, stage: Stage[Any, Any], console: Console, catalog: Catalog, run: RunConfig,
                report: StageReport, make_executor: Callable[..., Any]) -> None:  # fmt: skip
    stage.prepare(catalog)
    selection = stage.select(catalog, report)
    if selection.done is not None:
        report.add(stage.done_label, selection.done)
    for failure in selection.failed_earlier:
        report.failures.append((failure.key, failure.kind, f"{failure.error} (run with --retry-failed)"))

    def on_done(outcome: Outcome[Any]) -> None:
        if outcome.ok:
            stage.commit(catalog, outcome.key, outcome.value, report)
            return
        err = outcome.error
        assert err is not None
        stage.record_failure(catalog, outcome.key, err)
        report.add(stage.failure_label(err))
        report.failures.append((outcome.key, err.kind, err.one_line()))

    if selection.items:
        executor = make_executor(run, stage)
        with _progress(console, stage.name, len(selection.items)) as advance:

            def committed(outcome: Outcome[Any]) -> None:
                on_done(outcome)
                advance(not outcome.ok)

            executor.run(stage, selection.items, committed)
    stage.finish(catalog, report)


def _command(stage: Stage[Any, Any]) -> str:
    return stage.name + (" --redo" if getattr(stage, "redo", False) else "")


def _run_dict(run: RunConfig) -> dict[str, Any]:
    return {"executor": run.executor, "ray_address": run.ray_address, "timeout": run.timeout}


class _progress:
    """The progress bar: done / total, failed so far, elapsed and remaining time."""

    def __init__(self, console: Console, label: str, total: int) -> None:
        columns = (
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed", style="red"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        self.progress = Progress(*columns, console=console, transient=False)
        self.task = self.progress.add_task(label, total=total, failed=0)
        self.failed = 0

    def __enter__(self) -> Callable[[bool], None]:
        self.progress.__enter__()

        def advance(failed: bool) -> None:
            self.failed += failed
            self.progress.update(self.task, advance=1, failed=self.failed)

        return advance

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]
