"""The local executor: a stage's items in threads or worker processes of this machine.

Threads suit work that waits (downloads) or runs outside the GIL (ffmpeg subprocesses, PyAV decode,
OpenCV); processes suit work that holds the GIL in Python. Each stage says which it prefers
(`Stage.local_mode`, chosen by measurement in benchmarks/bench_ray.py).
"""

from __future__ import annotations

import multiprocessing
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from typing import Any

from nwt_data.config import RunConfig
from nwt_data.executors import Dispatch
from nwt_data.runner import Outcome, Stage, call_item


class LocalExecutor:
    def __init__(self, run: RunConfig, *, workers: int, mode: str = "threads") -> None:
        self.run_config = run
        self.workers = max(1, workers)
        self.mode = mode

    def _pool(self, n: int) -> Executor:
        if self.mode == "processes" and n > 1:
            # forkserver: forking the driver (threads, an open SQLite handle) is not safe.
            return ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("forkserver"),
                                       initializer=exit_with_driver, initargs=(os.getpid(),))  # fmt: skip
        return ThreadPoolExecutor(max_workers=n)

    def run(self, stage: Stage[Any, Any], items: Sequence[tuple[str, Any]],
            on_done: Callable[[Outcome[Any]], None]) -> None:  # fmt: skip
        n = min(self.workers, len(items))
        limit = self.run_config.max_in_flight or n
        dispatch = Dispatch(stage, items, limit=min(limit, n), per_site=self.run_config.downloads_per_site)
        with self._pool(n) as pool:
            running: dict[Future[Outcome[Any]], str] = {}
            try:
                while dispatch or running:
                    while (nxt := dispatch.take()) is not None:
                        key, item = nxt
                        running[pool.submit(call_item, stage.work, key, item)] = key
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        dispatch.finished(running.pop(future))
                        on_done(future.result())
            except BaseException:
                for future in running:
                    future.cancel()
                raise


def exit_with_driver(driver: int) -> None:
    """Worker initializer: die when the driver does, even by `kill -9`.

    Otherwise the pool's workers outlive a killed driver: each finishes its item and the ones queued
    for it, writing into the workspace after the stage lock is gone, while the next run clears and
    rewrites the same folders; then they wait forever on a queue no one feeds. Their ffmpeg children
    die with them (PR_SET_PDEATHSIG in nwt_data.media.ffmpeg).
    """
    threading.Thread(target=_wait_for_exit, args=(driver,), name="nwt-driver-watch", daemon=True).start()


def _wait_for_exit(pid: int) -> None:
    try:
        handle = os.pidfd_open(pid)  # Linux: readable once the process has exited
    except ProcessLookupError:
        handle = None  # already gone
    except (AttributeError, OSError):  # not Linux, or an old kernel: poll
        while _alive(pid):
            time.sleep(0.2)
        handle = None
    if handle is not None:
        select.select([handle], [], [])
    os.kill(os.getpid(), signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
