"""Benchmark: per-clip preparation against a bare ffmpeg decode, and the loader against a raw tar read.

(a) Preparation. For each source, in the same run and interleaved, best of N:
  prepare   the real stages on a fresh workspace (`run_fetch` copies the source in; not timed):
            `run_segment`, `run_mask` (decode, crop, overlay mask, 256x224 at 30 FPS, H.264 encode,
            24 kHz audio and its mel) and `run_shard`, with 1 worker, with 2 workers / every CPU, and
            with 1 worker pinned to one CPU (every thread and ffmpeg child of this process on it);
  decode    `ffmpeg -i SRC -f null -` of the same source (ffmpeg's default decoder threads) and
            `ffmpeg -threads 1 -i SRC -f null -`, under the same CPU pinning as the row.
  ratio = prepare total / decode, in wall time and in CPU time (this process and its children); the
  target is at most 2x. A cProfile of `prepare_clip`, pinned to one CPU, says where the mask stage
  spends its time per output frame.
(b) Loading, in one process pinned to one CPU with torch.set_num_threads(1), on the shards of (a):
  loader    `nwt_train.data.clip_windows(..., frames=30, shuffle_buffer=0)`: windows (= clips) per
            second, with a cProfile breakdown;
  raw read  `tarfile` read of every member of the same tar files (MB/s, samples/s), and webdataset's
            own tar reading without any decoding.
  Then, for several keyframe intervals of the stored video (MaskConfig.gop; the mask stage re-run
  into fresh workspaces), the stored bytes per clip-second and the loader's windows per second.

Sources: a generated 1280x720 episode at 30000/1001 fps with a keyframe every 6 s (broadcast TV
style; cached in the system temp folder) and, when present, the real clips in ../shared/media
(segmented with --crop center, all in one workspace). Wall times are only as good as the machine is
quiet: the load average is printed, and the CPU-time columns are the steadier measure on a busy
machine. Run with `python benchmarks/bench_prepare.py` (`--quick`: a smoke run of about a minute).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import csv
import io
import os
import pstats
import re
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from nwt_data.catalog import Catalog
from nwt_data.config import CropSpec, FetchConfig, MaskConfig, SegmentConfig, ShardConfig, parse_size, to_dict
from nwt_data.media.ffmpeg import lavfi_demo_args, run_ffmpeg
from nwt_data.media.probe import probe
from nwt_data.stages import StageReport
from nwt_data.stages.fetch import run_fetch
from nwt_data.stages.mask import prepare_clip, run_mask
from nwt_data.stages.segment import run_segment
from nwt_data.stages.shard import run_shard
from nwt_data.workspace import Workspace

SHARED_MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
CACHE_DIR = Path(tempfile.gettempdir()) / "nwt-bench"
EPISODE_FPS = "30000/1001"
WINDOW_FRAMES = 30
STAGES = ("segment", "mask", "shard")

# Off a terminal (nox, a log file) rich would wrap the tables at 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=200)


def quiet() -> Console:
    return Console(file=io.StringIO())


def cpu_seconds() -> float:
    """CPU time of this process (every thread) and of its finished children (ffmpeg)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


# --- inputs ------------------------------------------------------------------------------------
def generated_episode(seconds: float, width: int, height: int, gop: int) -> Path:
    """A 30000/1001 fps H.264/AAC test-pattern episode, generated once and kept in CACHE_DIR."""
    out = CACHE_DIR / f"lavfi-{width}x{height}-30000_1001fps-gop{gop}-{seconds:g}s.mp4"
    if out.exists():
        return out
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.stem}.{os.getpid()}.partial.mp4")
    console.print(f"generating {out.name} (once; cached in {CACHE_DIR}) ...")
    start = time.perf_counter()
    args = lavfi_demo_args(partial, seconds=seconds, width=width, height=height, fps=EPISODE_FPS, gop=gop)
    run_ffmpeg(args)
    partial.replace(out)
    console.print(f"  done in {time.perf_counter() - start:.1f} s")
    return out


@dataclass(frozen=True)
class Source:
    name: str
    files: tuple[Path, ...]  # one workspace holds them all, one episode each
    crop: CropSpec


# --- CPU pinning -------------------------------------------------------------------------------
def _threads() -> list[int]:
    return [int(tid) for tid in os.listdir("/proc/self/task")]


@contextlib.contextmanager
def pinned(cpus: int | None) -> Iterator[None]:
    """Run the block on the first `cpus` CPUs: every thread of this process, and what it starts."""
    if cpus is None or not hasattr(os, "sched_setaffinity") or not Path("/proc/self/task").is_dir():
        yield
        return
    saved = os.sched_getaffinity(0)
    wanted = set(sorted(saved)[:cpus])
    for tid in _threads():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, wanted)
    try:
        yield
    finally:
        for tid in _threads():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, saved)


def cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextlib.contextmanager
def one_core() -> Iterator[None]:
    """One CPU and one torch thread, for per-core loader numbers."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pinned(1):
            yield
    finally:
        torch.set_num_threads(threads)


# --- (a) the stages on a fresh workspace -------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    workers: int
    cpus: int | None = None  # pinned to this many CPUs; None: all of them

    @property
    def label(self) -> str:
        text = f"{self.workers} worker{'s' if self.workers > 1 else ''}"
        return text + (f", {self.cpus} CPU" if self.cpus else "")


@dataclass
class Prepared:
    wall: dict[str, float]  # per stage
    cpu: dict[str, float]
    clips: int
    out_frames: int
    video_bytes: int  # the stored video.mp4 files
    sample_bytes: int  # video + audio + mel
    shards: int
    root: Path | None = None  # the workspace, when kept

    @property
    def total(self) -> float:
        return sum(self.wall.values())

    @property
    def total_cpu(self) -> float:
        return sum(self.cpu.values())

    @property
    def clip_seconds(self) -> float:
        return self.out_frames / 30


def episode_id_for(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", path.stem).strip("-_")[:80] or "episode"


def new_workspace(parent: Path, files: tuple[Path, ...]) -> tuple[Path, Workspace, Catalog]:
    """A workspace holding `files` as fetched episodes (run_fetch copies them; not timed)."""
    root = Path(tempfile.mkdtemp(prefix="ws-", dir=parent))
    ws = Workspace.open(root / "ws")
    catalog = Catalog(ws.catalog_path)
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["episode_id", "url"])
        writer.writerows([episode_id_for(p), str(p)] for p in files)
    report = run_fetch(ws, catalog, manifest, FetchConfig(workers=1), quiet())
    if report.failures:
        raise SystemExit(f"fetch failed: {report.failures}")
    return root, ws, catalog


def files_size(folder: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in folder.rglob(pattern) if p.is_file())


def auto_shard_size(prepared_bytes: int) -> int:
    """About four train shards, so that the loader picks among several (the default is 1 GB)."""
    return max(1_000_000, prepared_bytes // 4)


def prepare(parent: Path, source: Source, setting: Setting, *, shard_size: int | None,
            gop: int | None = None, keep: bool = False) -> Prepared:  # fmt: skip
    """segment, mask and shard on a fresh workspace, each run as the CLI runs it; timed per stage."""
    root, ws, catalog = new_workspace(parent, source.files)
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def stage(command: str, config: Any, run: Callable[[], StageReport]) -> None:
        run_id = catalog.start_run(command, to_dict(config))
        start, start_cpu = time.perf_counter(), cpu_seconds()
        report = run()
        wall[command], cpu[command] = time.perf_counter() - start, cpu_seconds() - start_cpu
        catalog.finish_run(run_id, report.counts)
        if report.failures:
            raise SystemExit(f"{command} failed on {source.name}: {report.failures[:3]}")

    try:
        with pinned(setting.cpus):
            seg = SegmentConfig(workers=setting.workers, crop=source.crop)
            stage("segment", seg, lambda: run_segment(ws, catalog, seg, quiet()))
            mask = MaskConfig(
                workers=setting.workers, include_unreviewed=True, **({} if gop is None else {"gop": gop})
            )
            stage("mask", mask, lambda: run_mask(ws, catalog, mask, quiet()))
            prepared_bytes = files_size(ws.prepared_dir, "*")
            shard = ShardConfig(shard_size=shard_size or auto_shard_size(prepared_bytes))
            stage("shard", shard, lambda: run_shard(ws, catalog, shard, quiet()))
        done = catalog.clips("mask_status = 'done'")
        return Prepared(
            wall=wall,
            cpu=cpu,
            clips=len(done),
            out_frames=sum(int(c["out_frames"]) for c in done),
            video_bytes=files_size(ws.prepared_dir, "video.mp4"),
            sample_bytes=prepared_bytes,
            shards=len(catalog.shards()),
            root=ws.root if keep else None,
        )
    finally:
        catalog.close()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def time_decode(files: tuple[Path, ...], threads: int | None, cpus: int | None) -> tuple[float, float]:
    """`ffmpeg [-threads N] -i SRC -f null -` of every file, video and audio: (wall s, CPU s)."""
    extra = [] if threads is None else ["-threads", str(threads)]
    with pinned(cpus):
        start, start_cpu = time.perf_counter(), cpu_seconds()
        for path in files:
            run_ffmpeg([*extra, "-i", str(path), "-f", "null", "-"])
        return time.perf_counter() - start, cpu_seconds() - start_cpu


@dataclass
class Row:
    source: Source
    setting: Setting
    prepared: Prepared
    decode: tuple[float, float]  # ffmpeg's default threads: best wall, best CPU
    decode_1t: tuple[float, float]  # -threads 1


def bench_source(parent: Path, source: Source, settings: list[Setting], runs: int, shard_size: int | None,
                 keep_for: Setting | None) -> tuple[list[Row], Path | None]:  # fmt: skip
    """Best of `runs` for each setting, interleaved with the decodes; keeps one workspace if asked."""
    time_decode(source.files, None, None)  # page cache; not counted
    best: dict[Setting, Prepared] = {}
    decodes: dict[Setting, list[tuple[float, float]]] = {s: [] for s in settings}
    decodes_1t: dict[Setting, list[tuple[float, float]]] = {s: [] for s in settings}
    kept: Path | None = None
    for run in range(runs):
        for setting in settings:
            keep = setting == keep_for and run == runs - 1
            result = prepare(parent, source, setting, shard_size=shard_size, keep=keep)
            if keep:
                kept = result.root
            if setting not in best or result.total < best[setting].total:
                best[setting] = result
            decodes[setting].append(time_decode(source.files, None, setting.cpus))
            decodes_1t[setting].append(time_decode(source.files, 1, setting.cpus))

    def floor(values: list[tuple[float, float]]) -> tuple[float, float]:
        return min(v[0] for v in values), min(v[1] for v in values)

    rows = [Row(source, s, best[s], floor(decodes[s]), floor(decodes_1t[s])) for s in settings]
    return rows, kept


def render_prepare(rows: list[Row], runs: int) -> Table:
    table = Table(
        title=f"(a) per-clip preparation vs a bare `ffmpeg -i SRC -f null -` decode; seconds, best of {runs}",
        header_style="bold",
    )
    columns = ("source", "setting", "clips", "frames", "segment", "mask", "shard", "total",
               "mask ms/frame", "decode", "decode -threads 1", "total/decode", "total/1-thread", "CPU",
               "CPU/decode CPU")  # fmt: skip
    for name in columns:
        left = name in ("source", "setting")
        table.add_column(name, justify="left" if left else "right", no_wrap=left)
    for r in rows:
        p = r.prepared
        ratio = p.total / r.decode[0]
        style = "green" if ratio <= 2 else "red"
        table.add_row(
            r.source.name,
            r.setting.label,
            str(p.clips),
            str(p.out_frames),
            *(f"{p.wall[s]:.2f}" for s in STAGES),
            f"{p.total:.2f}",
            f"{p.wall['mask'] / max(p.out_frames, 1) * 1000:.2f}",
            f"{r.decode[0]:.2f}",
            f"{r.decode_1t[0]:.2f}",
            f"[{style}]{ratio:.2f}x[/]",
            f"{p.total / r.decode_1t[0]:.2f}x",
            f"{p.total_cpu:.2f}",
            f"{p.total_cpu / r.decode[1]:.2f}x",
        )
    return table


# --- cProfile, summarised ----------------------------------------------------------------------
Func = tuple[str, int, str]  # pstats' key: file, line, function name
Dist = dict[Any, float]


@dataclass(frozen=True)
class Parts:
    """How to split a profile's own times into a few named parts.

    `context`: a function name whose whole call (everything under it) counts towards a part.
    `leaf`: elsewhere, the part a function's own time counts towards, or None: then it counts
    towards its callers' parts, weighted by the time each caller spent in it.
    """

    order: tuple[str, ...]
    context: dict[str, str]
    leaf: Callable[[Func], str | None]


def _by_name(rules: dict[str, tuple[str, ...]]) -> Callable[[str], str | None]:
    def match(name: str) -> str | None:
        low = name.lower()
        return next((part for part, needles in rules.items() if any(n in low for n in needles)), None)

    return match


_MASK_NAMES = _by_name({
    "encode (x264) + mux": ("'encode' of", "'mux' of", "from_ndarray", "outputcontainer"),
    "decode (video)": ("'decode' of", "'demux' of", "held_frames", "kept_frames", "core.open"),
    "to RGB + crop + scale": ("to_ndarray", "'pull' of", "'push' of", "resize", "reformat", "_scaled_rgb"),
    "overlay detection + paint": ("threshold", "contours", "boundingrect", "cvtcolor", "_boxes", "scale_box",
                                  "_luma"),
})  # fmt: skip

MASK_PARTS = Parts(
    order=(
        "decode (video)",
        "to RGB + crop + scale",
        "overlay detection + paint",
        "encode (x264) + mux",
        "audio decode (PyAV)",
        "resample to 24 kHz",
        "mel spectrogram",
        "write outputs",
        "other",
    ),
    context={
        "audio_span": "audio decode (PyAV)",
        "kept_audio": "audio decode (PyAV)",
        "to_model_rate": "resample to 24 kHz",
        "mel_spectrogram": "mel spectrogram",
        "save": "write outputs",
        "write_text": "write outputs",
        "replace_dir": "write outputs",
        "new_temp_dir": "write outputs",
        "_open_encoder": "encode (x264) + mux",
    },
    # The decode generator of held_frames shows up as a <genexpr> of clip.py.
    leaf=lambda f: (
        "decode (video)" if f[0].endswith("clip.py") and f[2] == "<genexpr>" else _MASK_NAMES(f[2])
    ),
)

_LOADER_NAMES = _by_name({
    "open + seek": ("'seek' of", "core.open"),
    "decode (video)": ("'decode' of", "decode_video_window"),
    "to RGB (swscale)": ("to_ndarray",),
})  # fmt: skip

LOADER_PARTS = Parts(
    order=(
        "tar read + samples (webdataset)",
        "open + seek",
        "decode (video)",
        "to RGB (swscale)",
        "stack frames (numpy)",
        "to float [-1, 1] (torch)",
        "other",
    ),
    context={"to_unit_range": "to float [-1, 1] (torch)", "stack": "stack frames (numpy)"},
    leaf=lambda f: (
        "tar read + samples (webdataset)"
        if "webdataset" in f[0] or f[0].endswith("tarfile.py")
        else _LOADER_NAMES(f[2])
    ),
)


def attribute(stats: pstats.Stats, parts: Parts) -> dict[str, float]:
    """Every function's own time, split over `parts` (see Parts)."""
    table: dict[Func, Any] = stats.stats  # type: ignore[attr-defined]

    def through_callers(func: Func, own: Callable[[Func], Dist | None], memo: dict[Func, Dist],
                        root: Dist, seen: frozenset[Func]) -> Dist:  # fmt: skip
        if func in memo:
            return memo[func]
        mine = own(func)
        if mine is not None:
            memo[func] = mine
            return mine
        callers = {c: edge for c, edge in table[func][4].items() if c in table}
        if not callers or func in seen:
            return root
        weights = {c: (edge[3] if len(edge) > 3 else 0.0) or 1e-12 for c, edge in callers.items()}
        total = sum(weights.values())
        out: Dist = {}
        for caller, weight in weights.items():
            for key, share in through_callers(caller, own, memo, root, seen | {func}).items():
                out[key] = out.get(key, 0.0) + share * weight / total
        memo[func] = out or root
        return memo[func]

    def context(func: Func) -> Dist | None:
        return {parts.context[func[2]]: 1.0} if func[2] in parts.context else None

    def leaf(func: Func) -> Dist | None:
        part = parts.leaf(func)
        return {part: 1.0} if part else None

    memo_context: dict[Func, Dist] = {}
    memo_leaf: dict[Func, Dist] = {}
    out = dict.fromkeys(parts.order, 0.0)
    for func, (_, _, own_time, _, _) in table.items():
        for ctx, w in through_callers(func, context, memo_context, {None: 1.0}, frozenset()).items():
            if ctx is not None:
                out[ctx] += own_time * w
                continue
            for part, v in through_callers(func, leaf, memo_leaf, {"other": 1.0}, frozenset()).items():
                out[part] += own_time * w * v
    return out


@dataclass
class Profile:
    title: str
    items: int  # what the per-item column divides by
    unit: str
    wall: float  # the same work without the profiler
    cpu: float
    parts: dict[str, float] = field(default_factory=dict)
    order: tuple[str, ...] = ()
    top: list[tuple[str, float]] = field(default_factory=list)


def profiled(
    work: Callable[[], Any], parts: Parts
) -> tuple[float, float, dict[str, float], list[tuple[str, float]]]:
    """Run `work` once plain (wall, CPU) and once under cProfile: (wall, CPU, parts, top functions).

    The profile counts this process's CPU time, not wall time: other programs on a busy machine do
    not inflate it, and pinned to one CPU, time in the decoder's or x264's own threads lands on the
    call that runs meanwhile, which on one CPU is the call that waits for it.
    """
    start, start_cpu = time.perf_counter(), cpu_seconds()
    work()
    wall, cpu = time.perf_counter() - start, cpu_seconds() - start_cpu
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    work()
    profiler.disable()
    stats = pstats.Stats(profiler)
    table: dict[Func, Any] = stats.stats  # type: ignore[attr-defined]
    top = sorted(((pstats.func_std_string(f), v[2]) for f, v in table.items()), key=lambda x: -x[1])[:6]
    return wall, cpu, attribute(stats, parts), top


def decode_alone(paths: list[Path]) -> tuple[float, int]:
    """CPU seconds and frames of a plain PyAV decode of the files' video (threads as the reader sets)."""
    import av

    start, frames = cpu_seconds(), 0
    for path in paths:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            frames += sum(1 for _ in container.decode(stream))
    return cpu_seconds() - start, max(frames, 1)


def profile_mask(ws_root: Path, clips: int) -> Profile:
    """cProfile `prepare_clip` (default MaskConfig) on clips of a workspace, pinned to one CPU."""
    ws = Workspace.open(ws_root, create=False)
    catalog = Catalog(ws.catalog_path)
    try:
        rows = catalog.clips("mask_status = 'done'")
        config = MaskConfig(workers=1)
        chosen = rows[1 : 1 + clips] or rows[:1]
        with pinned(1):
            prepare_clip(ws, rows[0], config)  # warm: imports, first-call set-up

            def work() -> None:
                for row in chosen:
                    prepare_clip(ws, row, config)

            wall, cpu, parts, top = profiled(work, MASK_PARTS)
            decode_cpu, decoded = decode_alone([ws.root / r["path"] for r in chosen])
    finally:
        catalog.close()
    frames = sum(int(r["out_frames"]) for r in chosen)
    source_frames = sum(int(r["frame_count"]) for r in chosen)
    title = (
        f"(a) mask stage, one CPU: cProfile of prepare_clip on {len(chosen)} clip(s), {frames} output frames"
        f" from {source_frames} source frames; unprofiled {wall / frames * 1000:.2f} ms wall,"
        f" {cpu / frames * 1000:.2f} ms CPU per output frame. For scale: PyAV decoding the same clip files"
        f" alone takes {decode_cpu / decoded * 1000:.2f} ms CPU per source frame"
    )
    return Profile(title, frames, "output frame", wall, cpu, parts, MASK_PARTS.order, top)


def render_profile(p: Profile, with_top: bool) -> list[Table]:
    table = Table(title=p.title, header_style="bold")
    for name in ("part", "profiled CPU s", f"CPU ms / {p.unit}", "share"):
        table.add_column(name, justify="left" if name == "part" else "right")
    total = sum(p.parts.values()) or 1.0
    for part in p.order:
        seconds = p.parts.get(part, 0.0)
        table.add_row(part, f"{seconds:.3f}", f"{seconds / p.items * 1000:.2f}", f"{seconds / total:.0%}")
    table.add_row("[bold]all[/]", f"{total:.3f}", f"{total / p.items * 1000:.2f}", "100%")
    if not with_top:
        return [table]
    top = Table(title="the same profile's functions with the most own time", header_style="bold")
    top.add_column("function", overflow="fold")
    top.add_column("own CPU s", justify="right")
    top.add_column(f"CPU ms / {p.unit}", justify="right")
    for name, seconds in p.top:
        top.add_row(name, f"{seconds:.3f}", f"{seconds / p.items * 1000:.2f}")
    return [table, top]


# --- (b) the loader against a raw read --------------------------------------------------------
def train_shards(ws_root: Path) -> tuple[Path, list[Path]]:
    from nwt_train.data import Dataset

    dataset = Dataset.open(ws_root / "shards")
    return dataset.root, [Path(u) for u in dataset.shard_urls("train")]


def raw_tar_read(shards: list[Path], passes: int) -> tuple[float, int, int]:
    """Read every member of the tar files with `tarfile`, `passes` times: (seconds, bytes, samples)."""
    start = time.perf_counter()
    nbytes, samples = 0, 0
    for _ in range(passes):
        for path in shards:
            keys = set()
            with tarfile.open(path) as tar:
                for member in tar:
                    if member.isfile():
                        f = tar.extractfile(member)
                        assert f is not None
                        nbytes += len(f.read())
                        keys.add(member.name.split(".", 1)[0])
            samples += len(keys)
    return time.perf_counter() - start, nbytes, samples


def webdataset_samples(shards: list[Path], passes: int) -> tuple[float, int]:
    """webdataset's own tar reading and grouping into samples, nothing decoded: (seconds, samples)."""
    import webdataset as wds

    urls = [str(s) for s in shards] * passes
    start = time.perf_counter()
    count = sum(1 for _ in wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples()))
    return time.perf_counter() - start, count


def loader_windows(shards_root: Path, windows: int, seed: int) -> float:
    """Seconds for `clip_windows` to yield `windows` 30-frame windows, in this process."""
    from nwt_train.data import Dataset, clip_windows

    dataset = Dataset.open(shards_root)
    pipeline = clip_windows(dataset, "train", frames=WINDOW_FRAMES, samples_per_worker=windows,
                            shuffle_buffer=0, seed=seed)  # fmt: skip
    start = time.perf_counter()
    count = 0
    for item in pipeline:
        assert item["video"].shape[0] == WINDOW_FRAMES
        count += 1
    elapsed = time.perf_counter() - start
    if count != windows:
        raise SystemExit(f"the loader yielded {count} windows, not {windows}")
    return elapsed


@dataclass
class LoaderResult:
    shards: int
    shard_bytes: int
    raw: tuple[float, int, int]
    wds: tuple[float, int]
    windows: int
    loader: float
    profile: Profile


def bench_loader(ws_root: Path, windows: int, runs: int) -> LoaderResult:
    root, shards = train_shards(ws_root)
    _, _, samples = raw_tar_read(shards, 1)  # also fills the page cache; not counted
    passes = max(1, -(-windows // max(samples, 1)))  # read about as many samples as windows are made
    with one_core():
        loader_windows(root, 3, seed=99)
        raw = min((raw_tar_read(shards, passes) for _ in range(runs)), key=lambda r: r[0])
        wds_run = min((webdataset_samples(shards, passes) for _ in range(runs)), key=lambda r: r[0])
        loader = min(loader_windows(root, windows, seed=run) for run in range(runs))
        wall, cpu, parts, top = profiled(lambda: loader_windows(root, windows, seed=0), LOADER_PARTS)
    title = (
        f"(b) loader, one CPU: cProfile of clip_windows over {windows} {WINDOW_FRAMES}-frame windows;"
        f" unprofiled {wall / windows * 1000:.1f} ms wall, {cpu / windows * 1000:.1f} ms CPU per window"
    )
    profile = Profile(title, windows, "window", wall, cpu, parts, LOADER_PARTS.order, top)
    shard_bytes = sum(s.stat().st_size for s in shards)
    return LoaderResult(len(shards), shard_bytes, raw, wds_run, windows, loader, profile)


def render_loader(r: LoaderResult, runs: int) -> Table:
    table = Table(
        title=f"(b) loader vs raw read of the same {r.shards} train tar files ({r.shard_bytes / 1e6:.1f} MB,"
        f" read repeatedly); one process pinned to one CPU, torch.set_num_threads(1); best of {runs}",
        header_style="bold",
    )
    for name in ("reader", "items", "s", "items / s / core", "MB / s / core"):
        table.add_column(name, justify="left" if name == "reader" else "right")
    raw_s, raw_bytes, raw_samples = r.raw
    per_sample = raw_bytes / max(raw_samples, 1)
    wds_s, wds_samples = r.wds
    table.add_row("tarfile, every member read", f"{raw_samples} samples", f"{raw_s:.3f}",
                  f"{raw_samples / raw_s:.0f}", f"{raw_bytes / raw_s / 1e6:.0f}")  # fmt: skip
    table.add_row("webdataset tarfile_to_samples, no decode", f"{wds_samples} samples", f"{wds_s:.3f}",
                  f"{wds_samples / wds_s:.0f}", f"{wds_samples * per_sample / wds_s / 1e6:.0f}")  # fmt: skip
    table.add_row(f"clip_windows, {WINDOW_FRAMES}-frame windows (1 per clip)", f"{r.windows} windows",
                  f"{r.loader:.3f}", f"{r.windows / r.loader:.1f}",
                  f"{r.windows * per_sample / r.loader / 1e6:.1f}")  # fmt: skip
    return table


@dataclass
class GopRow:
    source: str
    gop: int
    prepared: Prepared
    loader: float
    windows: int
    reused: bool


def bench_gops(parent: Path, source: Source, gops: list[int], setting: Setting, windows: int, runs: int,
               shard_size: int | None, reuse: tuple[Path, Prepared] | None) -> list[GopRow]:  # fmt: skip
    """Mask (and shard) again for each stored keyframe interval; size and loader speed of each."""
    default_gop = MaskConfig().gop
    rows = []
    for gop in gops:
        console.print(f"  {source.name}: gop {gop} ...")
        if gop == default_gop and reuse is not None:
            ws_root, prepared = reuse
        else:
            prepared = prepare(parent, source, setting, shard_size=shard_size, gop=gop, keep=True)
            assert prepared.root is not None
            ws_root = prepared.root
        root, _ = train_shards(ws_root)
        with one_core():
            loader_windows(root, 3, seed=99)
            best = min(loader_windows(root, windows, seed=run) for run in range(runs))
        reused = reuse is not None and ws_root == reuse[0]
        rows.append(GopRow(source.name, gop, prepared, best, windows, reused))
        if reuse is None or ws_root != reuse[0]:
            shutil.rmtree(ws_root.parent, ignore_errors=True)
    return rows


def render_gops(rows: list[GopRow], setting: Setting, runs: int) -> Table:
    default_gop = MaskConfig().gop
    table = Table(
        title=f"(b) keyframe interval of the stored video (MaskConfig.gop; default {default_gop}): size vs"
        f" loader speed ({WINDOW_FRAMES}-frame windows, one CPU, best of {runs})",
        header_style="bold",
    )
    table.add_column("source", no_wrap=True)
    for name in ("gop", f"mask s ({setting.label})", "mask CPU ms/frame", "video kB / clip-s",
                 "sample kB / clip-s", "video vs gop 1", "windows / s / core",
                 "extra frames decoded / window"):  # fmt: skip
        table.add_column(name, justify="right")
    for r in rows:
        same = [o for o in rows if o.source == r.source]
        base = next((o for o in same if o.gop == 1), same[0])
        base_rate = base.prepared.video_bytes / base.prepared.clip_seconds
        p = r.prepared
        rate = p.video_bytes / p.clip_seconds
        table.add_row(
            r.source,
            f"{r.gop}{' (default)' if r.gop == default_gop else ''}",
            f"{p.wall['mask']:.2f}" + (" *" if r.reused else ""),
            f"{p.cpu['mask'] / max(p.out_frames, 1) * 1000:.2f}",
            f"{rate / 1000:.0f}",
            f"{p.sample_bytes / p.clip_seconds / 1000:.0f}",
            f"{rate / base_rate:.2f}x",
            f"{r.windows / r.loader:.1f}",
            f"{(r.gop - 1) / 2:.1f}",
        )
    return table


# --- main --------------------------------------------------------------------------------------
def int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def load_line() -> str:
    if not hasattr(os, "getloadavg"):
        return ""
    one, five, _ = os.getloadavg()
    busy = one > 0.5 * cpu_count()
    text = f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {cpu_count()} CPUs"
    return f"[red]{text}: other work competes; trust CPU columns over wall times[/]" if busy else text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--runs", type=int, default=None, help="timed runs of everything; the best counts [2; quick 1]")
    add("--seconds", type=float, default=None, help="length of the generated episode [90; quick 20]")
    add("--quick", action="store_true", help="small sizes for a smoke run")
    add("--source-gop", type=int, default=180, help="keyframe interval of the generated episode [180]")
    add("--workers", type=int_list, default=None, help="worker counts to time [1, 2, the CPU count]")
    add("--shard-size", default="auto", help="shard size for (a) and (b) [auto: about 4 train shards]")
    add("--windows", type=int, default=None, help="loader windows per timed run [150; quick 20]")
    add("--gops", type=int_list, default=None, help="stored keyframe intervals to compare [1,5,10,30]")
    add("--profile-clips", type=int, default=None, help="clips in the mask profile [2; quick 1]")
    add("--media", type=Path, default=SHARED_MEDIA, help="folder of real clips (*.mp4)")
    add("--no-real", action="store_true", help="skip the real clips")
    args = parser.parse_args(argv)
    runs = args.runs or (1 if args.quick else 2)
    seconds = args.seconds or (20.0 if args.quick else 90.0)
    windows = args.windows or (20 if args.quick else 150)
    gops = args.gops or [1, 5, 10, 30]
    profile_clips = args.profile_clips or (1 if args.quick else 2)
    if runs < 1 or windows < 1 or profile_clips < 1 or any(g < 1 for g in gops):
        parser.error("--runs, --windows, --profile-clips and --gops must be positive")
    shard_size = None if args.shard_size == "auto" else parse_size(args.shard_size)
    cpus = cpu_count()
    workers = args.workers or sorted({1, min(2, cpus), cpus})
    settings = [Setting(w) for w in workers]
    if cpus > 1:
        settings.append(Setting(1, cpus=1))
    widest = Setting(max(workers))

    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    episode = generated_episode(seconds, 1280, 720, args.source_gop)
    length = probe(episode).video_duration
    sources = [Source(f"generated 720p {length:.0f} s", (episode,), CropSpec())]
    if not args.no_real:
        real = tuple(sorted(args.media.glob("*.mp4"))) if args.media.is_dir() else ()
        if real:
            total = sum(probe(p).video_duration for p in real)
            sources.append(Source(f"{len(real)} real files {total:.0f} s", real, CropSpec(mode="center")))
        else:
            console.print(f"[dim]{args.media} is absent: generated episode only[/]")
    console.print(
        f"{episode.name}: keyframe every {args.source_gop} frames; settings: "
        f"{'; '.join(s.label for s in settings)}; best of {runs}"
    )
    console.print(load_line())

    parent = Path(tempfile.mkdtemp(prefix="nwt-bench-prepare-", dir=CACHE_DIR))
    started = time.perf_counter()
    try:
        # Warm-up on a short episode: imports (librosa, cv2, torch), first-call set-up; not counted.
        warm = generated_episode(4, 640, 360, 60)
        prepare(parent, Source("warm-up", (warm,), CropSpec()), Setting(1), shard_size=None)

        rows: list[Row] = []
        kept: Path | None = None
        for i, source in enumerate(sources):
            console.print(f"(a) timing {source.name} ...")
            source_rows, source_kept = bench_source(parent, source, settings, runs, shard_size,
                                                    keep_for=widest if i == 0 else None)  # fmt: skip
            rows += source_rows
            kept = kept or source_kept
        assert kept is not None
        console.print(render_prepare(rows, runs))
        console.print(
            "[dim]total = segment + mask + shard (fetch not included); frames: 30 FPS output frames."
            " decode: ffmpeg's default decoder threads; 1-thread: -threads 1. Decodes run under the row's"
            " CPU pinning, so the 1-CPU row is the per-core comparison. CPU: user + system time of this"
            " process and its ffmpeg children. Target: total / decode <= 2x (green).[/]"
        )
        console.print("(a) profiling the mask stage ...")
        for table in render_profile(profile_mask(kept, profile_clips), with_top=True):
            console.print(table)
        console.print(
            "[dim]Each function's own time counts towards the part named after it or, for numpy and Python"
            " helpers, towards the parts of its callers.[/]"
        )

        console.print("(b) timing the loader ...")
        loader = bench_loader(kept, windows, runs)
        console.print(render_loader(loader, runs))
        for table in render_profile(loader.profile, with_top=False):
            console.print(table)
        console.print(
            "[dim]cProfile's own cost (profiled total vs unprofiled) lands mostly on Python-heavy code:"
            " webdataset's tar reading is smaller than shown, the C parts are about right.[/]"
        )
        default = next(r.prepared for r in rows if r.source is sources[0] and r.setting == widest)
        console.print(f"(b) stored keyframe intervals {gops} (mask with {widest.label}) ...")
        gop_rows = bench_gops(parent, sources[0], gops, widest, windows, runs, shard_size, (kept, default))
        for source in sources[1:]:
            gop_rows += bench_gops(parent, source, gops, widest, windows, runs, shard_size, None)
        console.print(render_gops(gop_rows, widest, runs))
        console.print(
            "[dim]* from (a), the same config. kB / clip-s: stored kB per second of prepared clip (the"
            " video; the whole sample with audio and mel). A random window starts on average (gop - 1) / 2"
            " frames after the keyframe its decode must start from.[/]"
        )
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    console.print(f"[dim]benchmark wall time {time.perf_counter() - started:.0f} s; {load_line()}[/]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
