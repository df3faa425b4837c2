"""Benchmark: the data stages on the local executor against Ray, on 1 and on 2 CPUs of this machine.

For each setting the whole pipeline (fetch, segment, flag, mask, shard) runs on a fresh copy of the same
generated episodes (1280x720, 30 fps, the paper's crop):
  local 1 CPU   the local executor, 1 worker, this process and its children pinned to one CPU;
  local 2 CPUs  the local executor, 2 workers, on two CPUs;
  ray 1 CPU     `--executor ray` on a Ray cluster started with num_cpus=1, pinned to one CPU;
  ray 2 CPUs    the same with num_cpus=2 on two CPUs;
  local 2 CPUs, processes   the local executor with worker processes instead of threads (which one is
                faster per stage sets `Stage.local_mode`).
Per stage it reports items per second (wall), CPU-seconds (this process and every process under it:
ffmpeg children, the Ray head and its workers), and CPU-seconds per source minute. From those:
scaling efficiency (wall time on 1 CPU / wall time on 2 CPUs / 2) for each executor, and Ray's
overhead per item (Ray's CPU-seconds minus local's, on one CPU, per item), and the per-core throughput
(source hours prepared per core-hour) that the README's sizing table uses.

The machine may be shared: wall times then wander, CPU-seconds much less (both are printed, with the
load average). Run with `python benchmarks/bench_ray.py [--episodes N] [--seconds S]`, or
`nox -s bench -- ray`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from nwt_data.config import FetchConfig, MaskConfig, RunConfig, SegmentConfig, ShardConfig
from nwt_data.manifest import read_manifest
from nwt_data.media.ffmpeg import lavfi_demo_args, run_ffmpeg
from nwt_data.runner import run_stage
from nwt_data.stages.fetch import FetchStage
from nwt_data.stages.flags import FlagConfig, FlagStage
from nwt_data.stages.mask import MaskStage
from nwt_data.stages.segment import SegmentStage
from nwt_data.stages.shard import ShardStage
from nwt_data.workspace import Workspace

STAGES = ("fetch", "segment", "flag", "mask", "shard")
TICK = os.sysconf("SC_CLK_TCK")


# --- CPU time of a process tree, from /proc ----------------------------------------------------------
def _stat(pid: int) -> tuple[int, float] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    # ppid is field 4; utime, stime, cutime, cstime are fields 14-17 (1-based, as in proc(5)).
    ppid = int(fields[1])
    seconds = sum(int(v) for v in fields[11:15]) / TICK
    return ppid, seconds


def tree_cpu(root: int) -> float:
    """CPU-seconds of `root` and all its descendants, living and reaped (cutime/cstime count the dead)."""
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            found = _stat(int(entry.name))
            if found is not None:
                children.setdefault(found[0], []).append(int(entry.name))
                cpu[int(entry.name)] = found[1]
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo.extend(children.get(pid, []))
    return total


# --- the pipeline ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    name: str
    executor: str
    cpus: int
    local_mode: str = ""


SETTINGS = (
    Setting("local 1 CPU", "local", 1),
    Setting("ray 1 CPU", "ray", 1),
    Setting("local 2 CPUs", "local", 2),
    Setting("ray 2 CPUs", "ray", 2),
    Setting("local 2 CPUs, processes", "local", 2, "processes"),
)


@dataclass
class Measured:
    items: dict[str, int]
    wall: dict[str, float]
    cpu: dict[str, float]
    startup_cpu: float = 0.0  # Ray: starting the cluster and warming its workers (imports, JIT)


def _warm() -> int:
    """What a fresh worker process pays once: the stages' imports and librosa's JIT-compiled mel."""
    import numpy as np

    import nwt_data.stages.flags
    import nwt_data.stages.mask
    import nwt_data.stages.segment
    import nwt_data.stages.shard  # noqa: F401
    from nwt_data.audio import mel_spectrogram

    mel_spectrogram(np.zeros(24_000, dtype=np.float32))
    return os.getpid()


def make_episodes(folder: Path, count: int, seconds: float) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"ep{i:02d}.mp4"
        if not path.exists():
            run_ffmpeg(lavfi_demo_args(path, seconds=seconds, width=1280, height=720, fps="30", gop=60))
        paths.append(path)
    return paths


def run_pipeline(root: Path, manifest: Path, setting: Setting) -> Measured:
    ws = Workspace.open(root)
    quiet = Console(quiet=True)
    run = RunConfig(executor=setting.executor, local_mode=setting.local_mode)
    workers = setting.cpus
    stages: list[tuple[str, Callable[[], Any]]] = [
        (
            "fetch",
            lambda: FetchStage(ws, FetchConfig(workers=workers), read_manifest(manifest), str(manifest)),
        ),
        ("segment", lambda: SegmentStage(ws, SegmentConfig(workers=workers), timeout=run.timeout)),
        ("flag", lambda: FlagStage(ws, FlagConfig(workers=workers))),
        ("mask", lambda: MaskStage(ws, MaskConfig(workers=workers, include_unreviewed=True))),
        ("shard", lambda: ShardStage(ws, ShardConfig(shard_size=20_000_000))),
    ]
    measured = Measured({}, {}, {})
    for name, make in stages:
        stage = make()
        cpu0, t0 = tree_cpu(os.getpid()), time.perf_counter()
        report = run_stage(ws, stage, quiet, run=run, record=False)
        measured.wall[name] = time.perf_counter() - t0
        measured.cpu[name] = tree_cpu(os.getpid()) - cpu0
        if report.failures:
            raise SystemExit(f"{setting.name} {name} failed: {report.failures[:3]}")
        measured.items[name] = _items(report.counts, name)
    return measured


def _items(counts: dict[str, int], stage: str) -> int:
    key = {
        "fetch": "fetched",
        "segment": "episodes segmented",
        "flag": "clips flagged",
        "mask": "clips prepared",
    }.get(stage)
    if key:
        return counts.get(key, 0)
    return sum(v for k, v in counts.items() if k.startswith("new ") and k.endswith(" shards"))


def measure(setting: Setting, manifest: Path, work: Path) -> Measured:
    os.sched_setaffinity(0, set(range(setting.cpus)))
    ray = None
    startup = 0.0
    if setting.executor == "ray":
        import ray

        temp = tempfile.mkdtemp(prefix="nwt-ray-", dir="/tmp")
        cpu0 = tree_cpu(os.getpid())
        for attempt in range(3):  # a busy machine can make the head miss its start-up deadline
            try:
                ray.init(num_cpus=setting.cpus, include_dashboard=False, _temp_dir=temp,
                         logging_level="ERROR", log_to_driver=False)  # fmt: skip
                break
            except Exception:  # Ray raises a bare Exception for a timed-out start
                ray.shutdown()
                if attempt == 2:
                    raise
        # One warm-up task per CPU, all at once, so each worker process pays its start-up here.
        warm = ray.remote(_warm).options(num_cpus=1)
        ray.get([warm.remote() for _ in range(setting.cpus)])
        startup = tree_cpu(os.getpid()) - cpu0
    else:
        _warm()
    try:
        measured = run_pipeline(work / setting.name.replace(" ", "-"), manifest, setting)
        measured.startup_cpu = startup
        return measured
    finally:
        if ray is not None:
            ray.shutdown()
            shutil.rmtree(temp, ignore_errors=True)
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    console = Console()
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("this benchmark compares 1 and 2 CPUs: it needs at least 2")
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        work = Path(tmp)
        files = make_episodes(work / "media", args.episodes, args.seconds)
        manifest = work / "m.csv"
        manifest.write_text("episode_id,url\n" + "".join(f"{p.stem},{p}\n" for p in files))
        minutes = args.episodes * args.seconds / 60
        load = os.getloadavg()[0]
        console.print(
            f"{args.episodes} x {args.seconds:g} s at 1280x720 = {minutes:.2f} source min; load {load:.2f}"
        )
        results = {}
        for setting in SETTINGS:
            results[setting.name] = measure(setting, manifest, work)
            m = results[setting.name]
            console.print(
                f"  {setting.name}: {sum(m.wall.values()):.1f} s wall, {sum(m.cpu.values()):.1f} CPU-s"
            )
            for stage in STAGES:
                console.print(
                    f"    {stage}: {m.items[stage]} items, {m.wall[stage]:.1f} s, {m.cpu[stage]:.1f} CPU-s"
                )
        console.print(f"load average after: {os.getloadavg()[0]:.2f}")
    report(console, results, minutes)


def report(console: Console, results: dict[str, Measured], minutes: float) -> None:
    table = Table(title="per stage: items/s (wall) | CPU-s per source minute", header_style="bold")
    table.add_column("stage")
    table.add_column("items", justify="right")
    for name in results:
        table.add_column(name, justify="right")
    first = next(iter(results.values()))
    for stage in [*STAGES, "total"]:
        row = [stage, str(first.items.get(stage, "")) if stage != "total" else ""]
        for m in results.values():
            wall = sum(m.wall.values()) if stage == "total" else m.wall[stage]
            cpu = sum(m.cpu.values()) if stage == "total" else m.cpu[stage]
            rate = "" if stage == "total" else f"{m.items[stage] / wall:.2f}/s | "
            row.append(f"{rate}{cpu / minutes:.1f}")
        table.add_row(*row)
    console.print(table)

    summary = Table(title="scaling and overhead", header_style="bold")
    summary.add_column("measure")
    summary.add_column("value", justify="right")
    for executor in ("local", "ray"):
        one = results[f"{executor} 1 CPU"]
        two = results[f"{executor} 2 CPUs"]
        efficiency = sum(one.wall.values()) / sum(two.wall.values()) / 2
        summary.add_row(f"{executor}: scaling efficiency 1 -> 2 CPUs (wall)", f"{efficiency:.0%}")
    local, ray = results["local 1 CPU"], results["ray 1 CPU"]
    for stage in STAGES:
        items = max(1, local.items[stage])
        extra_cpu = (ray.cpu[stage] - local.cpu[stage]) / items
        extra_wall = (ray.wall[stage] - local.wall[stage]) / items
        summary.add_row(
            f"ray overhead per {stage} item (1 CPU)", f"{extra_wall:+.2f} s wall, {extra_cpu:+.2f} CPU-s"
        )
    for executor in ("ray 1 CPU", "ray 2 CPUs"):
        summary.add_row(
            f"{executor}: cluster start and worker warm-up (once)",
            f"{results[executor].startup_cpu:.1f} CPU-s",
        )
    for name, m in results.items():
        hours_per_core_hour = (minutes / 60) / (sum(m.cpu.values()) / 3600)
        summary.add_row(f"{name}: source hours per core-hour (CPU)", f"{hours_per_core_hour:.1f}")
    console.print(summary)
    cpu_per_minute = sum(results["ray 2 CPUs"].cpu.values()) / minutes
    console.print(f"sizing: {cpu_per_minute:.1f} CPU-s per source minute (ray, 2 CPUs) ->")
    for hours in (1_000, 10_000):
        cores = hours * 60 * cpu_per_minute / (24 * 3600)
        console.print(f"  {hours:,} h in 24 h: {cores:,.0f} cores busy (at 100% use, downloads not counted)")


if __name__ == "__main__":
    sys.exit(main())
