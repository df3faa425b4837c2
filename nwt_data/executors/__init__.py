"""Distributors behind one seam: every executor runs a stage's items and hands each outcome back.

`run(stage, items, on_done)` calls `stage.work(item)` for every `(key, item)` somewhere (a thread, a
worker process, a Ray task) and `on_done(outcome)` in the calling thread, the driver, as each one
finishes, so the driver stays the catalog's single writer. Both executors keep a bounded number of
items in flight and respect the per-site download limit (`Dispatch`), so changing executors changes
no stage code.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from nwt_data.config import RunConfig
from nwt_data.runner import Outcome, Stage


class Executor(Protocol):
    def run(self, stage: Stage[Any, Any], items: Sequence[tuple[str, Any]],
            on_done: Callable[[Outcome[Any]], None]) -> None: ...  # fmt: skip


def make_executor(run: RunConfig, stage: Stage[Any, Any]) -> Executor:
    if run.executor == "ray":
        from nwt_data.executors.ray_cluster import RayExecutor

        return RayExecutor(run)
    from nwt_data.executors.local import LocalExecutor

    return LocalExecutor(run, workers=stage.workers(), mode=run.local_mode or stage.local_mode)


class Dispatch:
    """The driver's queue: items in order, at most `limit` in flight, at most `per_site` per site."""

    def __init__(self, stage: Stage[Any, Any], items: Sequence[tuple[str, Any]], *, limit: int,
                 per_site: int) -> None:  # fmt: skip
        self.stage = stage
        self.waiting: deque[tuple[str, Any]] = deque(items)
        self.limit = max(1, limit)
        self.per_site = per_site
        self.busy: Counter[str] = Counter()
        self.site_of: dict[str, str | None] = {}

    def __bool__(self) -> bool:
        return bool(self.waiting)

    def in_flight(self) -> int:
        return len(self.site_of)

    def take(self) -> tuple[str, Any] | None:
        """The next item that may start now, or None (all slots full, or its site is busy)."""
        if self.in_flight() >= self.limit:
            return None
        for index, (key, item) in enumerate(self.waiting):
            site = self.stage.site(item)
            if site is None or self.busy[site] < self.per_site:
                del self.waiting[index]
                self.busy[site or ""] += 1
                self.site_of[key] = site
                return key, item
        return None

    def finished(self, key: str) -> None:
        site = self.site_of.pop(key)
        self.busy[site or ""] -= 1
