"""Run one stage's items in parallel, with a progress bar, turning failures into values.

Work functions run in threads: the heavy lifting happens in ffmpeg subprocesses, PyAV (which drops
the GIL while demuxing) and network I/O. Results come back to the calling thread, which alone writes
the catalog, in completion order.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

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

from nwt_data.errors import NwtError

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome(Generic[T]):
    key: str
    value: T | None = None
    error: NwtError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _call(work: Callable[[Any], T], key: str, item: Any) -> Outcome[T]:
    try:
        return Outcome(key, value=work(item))
    except NwtError as err:
        return Outcome(key, error=err)
    except Exception as err:  # a bug or an unforeseen library error: record it, keep going
        if os.environ.get("NWT_DEBUG"):
            traceback.print_exc()
        message = f"{type(err).__name__}: {err}".splitlines()[0]
        return Outcome(key, error=NwtError(message, hint="set NWT_DEBUG=1 for the traceback"))


def run_parallel(
    items: Sequence[tuple[str, Any]],
    work: Callable[[Any], T],
    on_done: Callable[[Outcome[T]], None],
    *,
    workers: int,
    label: str,
    console: Console,
) -> list[Outcome[T]]:
    """Run `work(item)` for each `(key, item)`; call `on_done` in this thread as each finishes."""
    outcomes: list[Outcome[T]] = []
    if not items:
        return outcomes
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed", style="red"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(label, total=len(items), failed=0)
        failed = 0
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items)))) as pool:
            pending: set[Future[Outcome[T]]] = {pool.submit(_call, work, key, item) for key, item in items}
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        outcome = future.result()
                        on_done(outcome)
                        outcomes.append(outcome)
                        failed += not outcome.ok
                        progress.update(task, advance=1, failed=failed)
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
    return outcomes
