"""One frozen, validated config dataclass per command.

Values come from three layers, later ones winning: the dataclass defaults (the paper's recipe), the
workspace's `nwt.toml` (one table per command), and command-line options. The effective config of
every run is saved in the catalog's `runs` table.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from dataclasses import dataclass, field
from typing import Any

from nwt_data.contract import FRAME_HEIGHT, FRAME_WIDTH
from nwt_data.errors import ConfigError

# The training frames are 224 wide and 256 tall (Appendix D, step 7): the data contract's.
OUTPUT_WIDTH = FRAME_WIDTH
OUTPUT_HEIGHT = FRAME_HEIGHT
OUTPUT_ASPECT = OUTPUT_WIDTH / OUTPUT_HEIGHT  # 0.875


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True, kw_only=True)
class CropSpec:
    """Where the portrait box sits in a source frame.

    mode "box": `box` = (left, top, width, height) in a `reference` frame size; scaled to the source
    when the source has the same aspect ratio. The paper's box (Appendix D step 3: columns 507..1130,
    rows 0..712 counted from the bottom of 1280x720) is (507, 8, 623, 712) @ 1280x720.
    mode "center": the largest centred box with the output aspect (224/256).
    mode "none": the whole frame.
    """

    mode: str = "box"
    box: tuple[int, int, int, int] = (507, 8, 623, 712)
    reference: tuple[int, int] = (1280, 720)

    def __post_init__(self) -> None:
        if self.mode not in ("box", "center", "none"):
            raise ConfigError(f"crop mode must be box, center or none, not {self.mode!r}")
        left, top, width, height = self.box
        if left < 0 or top < 0 or width <= 0 or height <= 0:
            raise ConfigError(f"crop box {self.box} must have left, top >= 0 and a positive size")
        ref_w, ref_h = self.reference
        if left + width > ref_w or top + height > ref_h:
            raise ConfigError(f"crop box {self.box} does not fit its reference frame {ref_w}x{ref_h}")

    @classmethod
    def parse(cls, text: str) -> CropSpec:
        """`paper`, `center`, `none`, `X,Y,W,H` (in 1280x720) or `X,Y,W,H@WIDTHxHEIGHT`."""
        text = text.strip().lower()
        if text in ("paper", "box"):
            return cls()
        if text in ("center", "none"):
            return cls(mode=text)
        match = re.fullmatch(r"(\d+),(\d+),(\d+),(\d+)(?:@(\d+)x(\d+))?", text.replace(" ", ""))
        if not match:
            raise ConfigError(
                f"cannot read crop {text!r}",
                hint="use paper, center, none, X,Y,W,H or X,Y,W,H@WIDTHxHEIGHT",
            )
        x, y, w, h = (int(v) for v in match.groups()[:4])
        ref = (int(match[5]), int(match[6])) if match[5] else (1280, 720)
        return cls(mode="box", box=(x, y, w, h), reference=ref)

    def describe(self) -> str:
        if self.mode != "box":
            return self.mode
        x, y, w, h = self.box
        return f"{x},{y},{w},{h}@{self.reference[0]}x{self.reference[1]}"


@dataclass(frozen=True, kw_only=True)
class FetchConfig:
    """`nwt-data fetch`: download episodes listed in a manifest."""

    workers: int = field(default_factory=default_workers)
    """Episodes downloaded at once."""
    retries: int = 3
    """Extra attempts for throttled or network failures within one run."""
    backoff_seconds: float = 2.0
    """First wait before a retry; doubles each attempt (with jitter)."""
    max_height: int = 720
    """Preferred video height; the paper's crop box assumes 1280x720."""
    socket_timeout: float = 30.0
    retry_failed: bool = False
    """Also retry episodes that failed in an earlier run."""

    def __post_init__(self) -> None:
        _positive("workers", self.workers)
        if self.retries < 0:
            raise ConfigError(f"retries must be >= 0, not {self.retries}")
        if self.backoff_seconds < 0:
            raise ConfigError(f"backoff_seconds must be >= 0, not {self.backoff_seconds}")
        _positive("max_height", self.max_height)
        _positive("socket_timeout", self.socket_timeout)


@dataclass(frozen=True, kw_only=True)
class SegmentConfig:
    """`nwt-data segment`: keyframe split, crop and trim (Appendix D steps 2-4)."""

    workers: int = field(default_factory=default_workers)
    """Episodes split at once."""
    segment_time: float = 4.0
    """ffmpeg's -segment_time: a clip ends at the first keyframe after this many seconds."""
    trim: float = 0.25
    """Seconds cut from each end of a clip (step 4)."""
    min_duration: float = 2.0
    """Clips this long or shorter are marked too short instead of trimmed."""
    crop: CropSpec = field(default_factory=CropSpec)
    """The portrait box: paper (507,8,623,712@1280x720, step 3), center (the largest centred box with
    the output aspect), none (the whole frame), X,Y,W,H (in 1280x720) or X,Y,W,H@WIDTHxHEIGHT."""

    def __post_init__(self) -> None:
        _positive("workers", self.workers)
        _positive("segment_time", self.segment_time)
        if self.trim < 0:
            raise ConfigError(f"trim must be >= 0, not {self.trim}")
        if self.min_duration < 2 * self.trim:
            raise ConfigError(f"min_duration ({self.min_duration}) must be at least twice trim ({self.trim})")


OVERLAY_RULES = ("graphic", "paper")


@dataclass(frozen=True, kw_only=True)
class MaskConfig:
    """`nwt-data mask`: overlay masking, 256x224 at 30 FPS, 24 kHz audio and mel (steps 6-8).

    `overlay_rule` "graphic" (the default) masks only what behaves like a post-production graphic
    (nwt_data.curation.overlay); "paper" is Appendix D step 6 exactly, with the thresholds below in
    pixels of its 712-row crop, scaled to each clip's crop height so other source sizes behave the same.
    """

    workers: int = field(default_factory=default_workers)
    """Clips prepared at once."""
    overlay_rule: str = "graphic"
    """Which overlays are painted white: graphic (rectangular, static panels, insets and captions that
    stay put while the subject moves) or paper (Appendix D step 6 exactly)."""
    overlay_fps: float = 4.0
    """graphic rule: frames per second of the kept window it looks at."""
    text_fps: float = 0.5
    """graphic rule: frames per second given to the OCR text detector (0: no text detection)."""
    spare_set_pieces: bool = True
    """graphic rule: leave unpainted what the episode's clips show as part of the set (a box found in
    each whole clip, at one place of the source frame with one look, in set_piece_share of the
    episode's clips, 3 clips at least: a sign, a window; also a logo that never leaves)."""
    set_piece_share: float = 0.8
    """graphic rule: share of an episode's clips a box must be found in to be the set's."""
    threshold: int = 185
    """paper rule: grayscale binarisation threshold (0-255)."""
    min_area: int = 4000
    """paper rule: a painted box's bounding rectangle is larger than this (square pixels)..."""
    max_area: int = 100_000
    """paper rule: ...and smaller than this (square pixels)..."""
    min_height: int = 80
    """paper rule: ...and taller than this many pixels..."""
    left_margin: int = 20
    """paper rule: ...and its top-left corner is within this many pixels of the left edge..."""
    top_offset: int = 550
    """paper rule: ...or more than this many pixels from the top."""
    reference_height: int = 712
    """Crop height the thresholds above are given for."""
    gop: int = 10
    """Keyframe interval of the stored 30 FPS video: a random window decodes <= this many extra frames."""
    crf: int = 17
    """x264 quality of the stored video (lower is better)."""
    include_unreviewed: bool = False
    """Also prepare clips nobody has reviewed yet (rejected clips are always left out)."""

    def __post_init__(self) -> None:
        _positive("workers", self.workers)
        if self.overlay_rule not in OVERLAY_RULES:
            raise ConfigError(f"overlay_rule must be graphic or paper, not {self.overlay_rule!r}")
        if not 0 < self.overlay_fps <= 60:
            raise ConfigError(f"overlay_fps must be within (0, 60], not {self.overlay_fps}")
        if not 0 <= self.text_fps <= self.overlay_fps:
            raise ConfigError(f"text_fps must be within [0, overlay_fps], not {self.text_fps}")
        if not 0 < self.set_piece_share <= 1:
            raise ConfigError(f"set_piece_share must be within (0, 1], not {self.set_piece_share}")
        if not 0 <= self.threshold <= 255:
            raise ConfigError(f"threshold must be within 0..255, not {self.threshold}")
        if not 0 <= self.min_area < self.max_area:
            raise ConfigError(f"need 0 <= min_area < max_area, not {self.min_area} and {self.max_area}")
        for name in ("min_height", "left_margin", "top_offset"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, not {getattr(self, name)}")
        _positive("reference_height", self.reference_height)
        _positive("gop", self.gop)
        if not 0 <= self.crf <= 51:
            raise ConfigError(f"crf must be within 0..51, not {self.crf}")


EXECUTORS = ("local", "ray")


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """How every stage distributes its items (the [run] table of nwt.toml; --executor, --ray-address)."""

    executor: str = "local"
    """`local` (threads or processes on this machine) or `ray` (tasks on a Ray cluster)."""
    ray_address: str = ""
    """The Ray cluster to join, e.g. 10.0.0.5:6379 (`ray start --head` prints it; on the command line it
    implies --executor ray); empty: $RAY_ADDRESS or a new local cluster."""
    max_in_flight: int = 0
    """Items submitted and not yet committed, at most (backpressure); 0: twice the CPUs available."""
    timeout: float = 3600.0
    """Seconds one subprocess (ffmpeg) or one download may take before its item fails with `timeout`."""
    downloads_per_site: int = 4
    """Downloads from one host at once, across the whole cluster (sites throttle busy addresses)."""
    task_retries: int = 3
    """Times Ray runs a task again when its worker process or node dies."""
    local_mode: str = ""
    """With `local`: run items in `threads` or `processes`; empty: each stage's measured default."""

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ConfigError(
                f"unknown executor {self.executor!r}", hint=f"use one of {', '.join(EXECUTORS)}"
            )
        if self.max_in_flight < 0:
            raise ConfigError(f"max_in_flight must be >= 0, not {self.max_in_flight}")
        _positive("timeout", self.timeout)
        _positive("downloads_per_site", self.downloads_per_site)
        if self.local_mode not in ("", "threads", "processes"):
            raise ConfigError(f"local_mode must be threads or processes, not {self.local_mode!r}")
        if self.task_retries < 0:
            raise ConfigError(f"task_retries must be >= 0, not {self.task_retries}")


SPEECH_ENGINES = ("auto", "espeak", "babble")
DEMO_DIR = "demo-workspace"


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    """`nwt-data demo`: the synthetic talking-face episodes it generates."""

    episodes: int = 4
    """How many talking-face episodes (at least 2: one is downloaded over HTTP, the others copied)."""
    seconds: float = 20.0
    """Length of each episode in seconds (at least 8)."""
    speech: str = "auto"
    """Their speech: espeak (espeak-ng), babble (synthetic syllables) or auto (espeak-ng when installed,
    else babble)."""

    def __post_init__(self) -> None:
        if self.episodes < 2:
            raise ConfigError(f"demo: episodes must be at least 2, not {self.episodes}")
        if self.seconds < 8:
            raise ConfigError(f"demo: seconds must be at least 8, not {self.seconds}")
        if self.speech not in SPEECH_ENGINES:
            raise ConfigError(f"demo: speech must be one of {', '.join(SPEECH_ENGINES)}, not {self.speech!r}")


def parse_size(text: str | int) -> int:
    """Bytes from `1GB`, `500MB`, `64KiB` or a plain number."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*", text.lower())
    if not match:
        raise ConfigError(f"cannot read size {text!r}", hint="use e.g. 1GB, 500MB or a number of bytes")
    unit = (match[2] or "").rstrip("b")
    base = 1024 if unit.endswith("i") else 1000
    power = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}[unit.rstrip("i")]
    return int(float(match[1]) * base**power)


def format_size(size: int) -> str:
    """`1GB` for 1_000_000_000, `64KiB` for 65536: the shortest text `parse_size` reads back."""
    units = (("TB", 1000, 4), ("GB", 1000, 3), ("MB", 1000, 2), ("kB", 1000, 1),
             ("TiB", 1024, 4), ("GiB", 1024, 3), ("MiB", 1024, 2), ("KiB", 1024, 1))  # fmt: skip
    for unit, base, power in units:
        if size >= base**power and size % base**power == 0:
            return f"{size // base**power}{unit}"
    return str(size)


@dataclass(frozen=True, kw_only=True)
class ShardConfig:
    """`nwt-data shard`: episode-stratified splits and WebDataset tar shards (steps 9-10)."""

    seed: int = 0
    """Seed of the split: the same seed always gives the same split."""
    val_fraction: float = 0.05
    """Share of the clips that go to val (`--split-ratios 90,5,5` sets both shares)..."""
    test_fraction: float = 0.05
    """...and to test; the rest is train. Once a dataset has 3 clips, val and test are never empty."""
    shard_size: int = 1_000_000_000
    """A shard is closed before it grows past this many bytes."""

    def __post_init__(self) -> None:
        for name in ("val_fraction", "test_fraction"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be within [0, 1), not {getattr(self, name)}")
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError(
                f"val_fraction + test_fraction must leave some train clips, not {self.val_fraction}"
                f" + {self.test_fraction}"
            )
        _positive("shard_size", self.shard_size)


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be positive, not {value}")


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON/TOML-friendly dict of a config (crop spec as its text form)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = value.describe() if isinstance(value, CropSpec) else value
    return out


def _check_type(section: str, name: str, value: Any, expected: Any) -> None:
    """A value from nwt.toml must have the field's type ('no' is not a boolean)."""
    checks: list[tuple[bool, str]] = [
        (name == "shard_size", "a whole number of bytes or text such as '1GB'"),
        (expected is bool, "true or false"),
        (expected is int, "a whole number"),
        (expected is float, "a number"),
        (expected is CropSpec, "text such as 'paper' or 'center'"),
        (expected is str, "text"),
    ]
    wanted = next((what for applies, what in checks if applies), None)
    ok = {
        "a whole number of bytes or text such as '1GB'": isinstance(value, (int, str)),
        "true or false": isinstance(value, bool),
        "a whole number": isinstance(value, int),
        "a number": isinstance(value, (int, float)),
        "text such as 'paper' or 'center'": isinstance(value, str),
        "text": isinstance(value, str),
    }.get(wanted, True)
    if wanted and (not ok or (isinstance(value, bool) and wanted != "true or false")):
        raise ConfigError(
            f"[{section}] {name} = {value!r} in nwt.toml must be {wanted}",
            hint="fix the value or delete the line to use the default",
        )


def build(cls: type, section: str, file_values: dict[str, Any], overrides: dict[str, Any]) -> Any:
    """Make a config of `cls` from the workspace file's table and the non-None CLI overrides."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(file_values) - names)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(unknown)} in the [{section}] table of nwt.toml",
            hint=f"known keys: {', '.join(sorted(names))}",
        )
    hints = typing.get_type_hints(cls)
    for name, value in file_values.items():
        _check_type(section, name, value, hints[name])
    values = {**file_values, **{k: v for k, v in overrides.items() if v is not None}}
    if isinstance(values.get("crop"), str):
        values["crop"] = CropSpec.parse(values["crop"])
    if "shard_size" in values:
        values["shard_size"] = parse_size(values["shard_size"])
    try:
        return cls(**values)
    except TypeError as err:  # a wrongly typed value from the TOML file
        raise ConfigError(f"bad value in config: {err}") from err
