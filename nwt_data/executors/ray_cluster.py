"""The Ray executor: every item's work is a Ray task on a cluster (`--executor ray`).

- Each task declares the CPUs and memory its stage needs (`Stage.resources`); Ray places it.
- At most `max_in_flight` tasks are submitted and not yet committed (default: twice the cluster's
  CPUs), so a million-item stage never floods the scheduler or the object store (backpressure).
- A task whose worker process or node dies is run again by Ray (`task_retries`); an item whose
  retries are spent fails alone, with kind `worker`.
- The driver alone writes the SQLite catalog; workers write their files under temporary names in the
  workspace, which every node must mount at the same path, and rename them into place.
- Downloads from one site are limited across the whole cluster, because the driver dispatches them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from nwt_data.config import RunConfig
from nwt_data.errors import ConfigError, NwtError
from nwt_data.executors import Dispatch
from nwt_data.runner import Outcome, Stage, call_item


class WorkerLost(NwtError):
    kind = "worker"


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise ConfigError(
            "--executor ray needs the Ray extra", hint="pip install 'nwt[ray]', or use --executor local"
        ) from err
    return ray


class RayExecutor:
    def __init__(self, run: RunConfig) -> None:
        self.run_config = run

    def _connect(self, ray: Any) -> bool:
        """Join the cluster (or start a local one); True when this call connected and must disconnect."""
        if ray.is_initialized():
            return False
        address = self.run_config.ray_address or os.environ.get("RAY_ADDRESS") or None
        try:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise ConfigError(
                f"cannot join the Ray cluster at {address}: {str(err).splitlines()[0]}",
                hint="start one with `ray start --head`, and pass the address it prints to --ray-address",
            ) from err
        return True

    def run(self, stage: Stage[Any, Any], items: Sequence[tuple[str, Any]],
            on_done: Callable[[Outcome[Any]], None]) -> None:  # fmt: skip
        ray = _import_ray()
        connected = self._connect(ray)
        try:
            self._run(ray, stage, items, on_done)
        finally:
            if connected:
                ray.shutdown()

    def _run(self, ray: Any, stage: Stage[Any, Any], items: Sequence[tuple[str, Any]],
             on_done: Callable[[Outcome[Any]], None]) -> None:  # fmt: skip
        resources = stage.resources
        options: dict[str, Any] = {
            "num_cpus": resources.cpus,
            "max_retries": self.run_config.task_retries,
            "retry_exceptions": False,  # item errors are values; only a dead worker is retried
            "name": f"nwt-{stage.name}",
        }
        if resources.memory_mb:
            options["memory"] = resources.memory_mb * 2**20
        LOST_WORKER = (
            ray.exceptions.WorkerCrashedError,
            ray.exceptions.NodeDiedError,
            ray.exceptions.OutOfMemoryError,
            ray.exceptions.TaskCancelledError,
        )
        task = ray.remote(call_item).options(**options)
        work = ray.put(stage.work)  # the stage and its config travel once, not with every item
        cpus = int(ray.cluster_resources().get("CPU", 1))
        limit = self.run_config.max_in_flight or max(2, 2 * cpus)
        dispatch = Dispatch(stage, items, limit=limit, per_site=self.run_config.downloads_per_site)
        running: dict[Any, str] = {}
        try:
            while dispatch or running:
                while (nxt := dispatch.take()) is not None:
                    key, item = nxt
                    running[task.remote(work, key, item)] = key
                ready, _ = ray.wait(list(running), num_returns=1)
                for ref in ready:
                    key = running.pop(ref)
                    dispatch.finished(key)
                    try:
                        outcome = ray.get(ref)
                    except LOST_WORKER as err:
                        tries = self.run_config.task_retries + 1
                        message = f"the Ray worker died {tries} times: {type(err).__name__}"
                        outcome = Outcome(
                            key, error=WorkerLost(message, hint="run again with --retry-failed")
                        )
                    on_done(outcome)
        except BaseException:
            for ref in running:
                ray.cancel(ref, force=True)
            raise
