"""`nwt-data report`: one self-contained HTML page that shows a dataset.

Plots (inline SVG, drawn here: no plotting library): clip durations; clips per episode by status, by
split and by review decision; why clips were rejected; how often each automatic flag fired; the
masked share of the frame; the speech ratio. Then contact sheets: a seeded sample of clips, one frame
each from the middle of the kept window with the overlay boxes `nwt-data mask` paints outlined in red
and the clip's flags written on it, each a link to the clip file. Everything is in the one file
(images as base64 data URIs), so it can be mailed or archived. The statistics come from one catalog
read; only the sampled clips are decoded, so a 100,000-clip dataset costs the same sheets.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#9c755f")
MAX_EPISODES = 60  # bars per episode chart; the rest are summed into one "others" bar


# --- statistics (pure) ------------------------------------------------------------------------------
@dataclass
class Stats:
    clips: int = 0
    episodes: int = 0
    durations: list[float] = field(default_factory=list)  # kept clips
    per_episode: dict[str, dict[str, Counter[str]]] = field(default_factory=dict)  # by -> episode -> counts
    reasons: Counter[str] = field(default_factory=Counter)
    flag_counts: Counter[str] = field(default_factory=Counter)
    flagged: int = 0  # clips with flags computed
    masked: list[float] = field(default_factory=list)
    speech: list[float] = field(default_factory=list)


def gather(rows: Iterable[Mapping[str, Any]], flag_names: Sequence[str]) -> Stats:
    """The report's numbers from catalog rows (clip_id, episode_id, status, reason, duration, review,
    review_reason, split, flag_status, flags, masked_fraction, speech_ratio)."""
    stats = Stats()
    by: dict[str, dict[str, Counter[str]]] = {"status": {}, "split": {}, "decision": {}}
    episodes = set()
    for r in rows:
        stats.clips += 1
        ep = r["episode_id"]
        episodes.add(ep)
        status = r["status"]
        by["status"].setdefault(ep, Counter())[status] += 1
        if status == "ok":
            if r["duration"] is not None:
                stats.durations.append(float(r["duration"]))
            by["split"].setdefault(ep, Counter())[r["split"] or "no split yet"] += 1
            by["decision"].setdefault(ep, Counter())[r["review"] or "unreviewed"] += 1
            if r["review"] == "rejected":
                stats.reasons[f"review: {r['review_reason'] or 'no reason'}"] += 1
            if r["flag_status"] == "done":
                stats.flagged += 1
                for name in filter(None, (r["flags"] or "").split(",")):
                    stats.flag_counts[name] += 1
                if r["speech_ratio"] is not None:
                    stats.speech.append(float(r["speech_ratio"]))
            if r["masked_fraction"] is not None:
                stats.masked.append(float(r["masked_fraction"]))
        else:
            stats.reasons[f"{status}: {(r['reason'] or '').split(':')[0][:40] or status}"] += 1
    for name in flag_names:
        stats.flag_counts.setdefault(name, 0)
    stats.episodes = len(episodes)
    stats.per_episode = by
    return stats


def sample_clips(clip_ids: Sequence[str], count: int, seed: int = 0) -> list[str]:
    """`count` clip ids chosen by a seeded hash: the same dataset always shows the same clips, and a
    clip stays in the sample as the dataset grows unless a clip ranked before it arrives."""
    ranked = sorted(clip_ids, key=lambda c: hashlib.sha256(f"{seed}:{c}".encode()).hexdigest())
    return sorted(ranked[:count])


# --- SVG charts (pure) ------------------------------------------------------------------------------
def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _nice(x: float) -> float:
    if x <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(x))
    return next(m * exp for m in (1, 2, 5, 10) if m * exp >= x)


def bar_chart(title: str, bars: Sequence[tuple[str, Mapping[str, float]]], *, width: int = 760,
              height: int = 260, percent: bool = False) -> str:  # fmt: skip
    """Vertical stacked bars: `bars` = [(label, {series: value})]; a legend names the series."""
    series = list(dict.fromkeys(k for _, values in bars for k in values))
    colours = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(series)}
    top = _nice(max((sum(v.values()) for _, v in bars), default=0.0))
    left, plot_top, plot_h = 48, 44, height - 44 - 86
    n = max(1, len(bars))
    step = (width - left - 130) / n
    every = max(1, math.ceil(n / 15))  # at most ~15 labels under the bars
    out = [f'<svg class="chart" role="img" aria-label="{_esc(title)}" width="{width}" height="{height}"'
           f' viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
           f'<text x="{left}" y="16" class="title">{_esc(title)}</text>']  # fmt: skip
    for frac in (0, 0.5, 1):
        y = plot_top + plot_h * (1 - frac)
        label = f"{frac * top:.0%}" if percent else f"{frac * top:g}"
        out.append(f'<line x1="{left}" x2="{left + n * step:.1f}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{left - 4}" y="{y + 4:.1f}" class="axis" text-anchor="end">{label}</text>')
    for i, (label, values) in enumerate(bars):
        x, y = left + i * step, plot_top + plot_h
        for s in series:
            v = values.get(s, 0)
            h = plot_h * v / top
            if h > 0:
                y -= h
                tip = f"{label}: {s} {v:.1%}" if percent else f"{label}: {s} {v:g}"
                bar_w = max(1.0, step - 2)
                out.append(f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}"'
                           f' fill="{colours[s]}"><title>{_esc(tip)}</title></rect>')  # fmt: skip
        if i % every == 0:
            cx, cy = x + step / 2, plot_top + plot_h + 12
            out.append(f'<text x="{cx:.1f}" y="{cy:.1f}" class="axis"'
                       f' transform="rotate(35 {cx:.1f} {cy:.1f})">{_esc(label[:22])}</text>')  # fmt: skip
    if len(series) > 1:  # the legend, right of the plot
        for k, s in enumerate(series):
            ly = plot_top + 14 * k
            out.append(f'<rect x="{width - 120}" y="{ly}" width="10" height="10" fill="{colours[s]}"/>')
            out.append(f'<text x="{width - 106}" y="{ly + 9}" class="axis">{_esc(s[:18])}</text>')
    out.append("</svg>")
    return "".join(out)


def histogram(title: str, values: Sequence[float], *, bins: int = 30, lo: float | None = None,
              hi: float | None = None, unit: str = "") -> str:  # fmt: skip
    if not values:
        return f'<p class="empty">{_esc(title)}: nothing measured yet.</p>'
    data = np.asarray(values, dtype=np.float64)
    lo = float(data.min()) if lo is None else lo
    hi = float(data.max()) if hi is None else hi
    if hi <= lo:
        hi = lo + 1.0
    counts, edges = np.histogram(np.clip(data, lo, hi), bins=bins, range=(lo, hi))
    bars = [(f"{edges[i]:.2f}{unit}", {"clips": int(c)}) for i, c in enumerate(counts)]
    summary = f"{title} (n = {len(data)}, median {np.median(data):.2f}{unit}, {lo:g}-{hi:g}{unit})"
    return bar_chart(summary, bars)


def episode_chart(title: str, per_episode: Mapping[str, Counter[str]]) -> str:
    items = sorted(per_episode.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    bars = [(ep, dict(c)) for ep, c in items[:MAX_EPISODES]]
    if len(items) > MAX_EPISODES:
        rest: Counter[str] = Counter()
        for _, c in items[MAX_EPISODES:]:
            rest.update(c)
        bars.append((f"{len(items) - MAX_EPISODES} others", dict(rest)))
    return bar_chart(title, bars)


# --- contact sheets ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Tile:
    clip_id: str
    href: str  # link to the clip file, relative to the report
    jpeg: bytes  # the frame with boxes and flags drawn
    caption: str


def draw_tile(rgb: np.ndarray, boxes: Sequence[tuple[int, int, int, int]], flags: Sequence[str],
              width: int = 224) -> bytes:  # fmt: skip
    """A JPEG of the frame scaled to `width`, boxes outlined in red, flags written at the top."""
    import cv2

    s = width / rgb.shape[1]
    img = cv2.resize(
        np.ascontiguousarray(rgb), (width, max(1, round(rgb.shape[0] * s))), interpolation=cv2.INTER_AREA
    )
    bgr = np.ascontiguousarray(img[:, :, ::-1])
    for x, y, w, h in boxes:
        cv2.rectangle(bgr, (round(x * s), round(y * s)), (round((x + w) * s) - 1, round((y + h) * s) - 1),
                      (0, 0, 255), 2)  # fmt: skip
    y = 14
    for name in flags:
        cv2.putText(bgr, name, (5, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(bgr, name, (5, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 255, 255), 1, cv2.LINE_AA)
        y += 16
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return data.tobytes()


def relative_href(target: Path, report: Path) -> str:
    """A link from the report's folder to `target` (posix, URL-quoted)."""
    from urllib.parse import quote

    return quote(Path(os.path.relpath(target, report.parent)).as_posix())


# --- the page -----------------------------------------------------------------------------------------
CSS = """
body{font:14px system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
.chart{display:block;margin:8px 0}.chart .title{font-weight:600;font-size:13px}
.chart .axis{font-size:10px;fill:#555}.chart .grid{stroke:#e3e3e3}
.summary td{padding:2px 12px 2px 0}.sheet{display:flex;flex-wrap:wrap;gap:8px}
.tile{width:224px;font-size:11px}.tile img{display:block;width:224px;border:1px solid #ccc}
.empty{color:#777}
"""


def render(title: str, stats: Stats, tiles: Sequence[Tile], notes: Sequence[str] = ()) -> str:
    """The whole report as one HTML string."""
    s = stats
    kept = len(s.durations)
    rows = [
        ("episodes", s.episodes),
        ("clips", s.clips),
        ("kept clips", kept),
        ("kept hours", f"{sum(s.durations) / 3600:.2f}"),
        ("clips with flags computed", s.flagged),
        ("clips prepared (mask)", len(s.masked)),
    ]
    flag_bars = [
        (name, {"share of flagged clips": n / max(1, s.flagged)}) for name, n in sorted(s.flag_counts.items())
    ]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_esc(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        "<table class='summary'>"
        + "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in rows)
        + "</table>",
        *(f"<p class='empty'>{_esc(n)}</p>" for n in notes),
        "<h2 id='durations'>Clip durations</h2>",
        histogram("kept clip duration", s.durations, unit=" s"),
        "<h2 id='episodes'>Clips per episode</h2>",
        episode_chart("by status", s.per_episode.get("status", {})),
        episode_chart("kept clips by split", s.per_episode.get("split", {})),
        episode_chart("kept clips by review decision", s.per_episode.get("decision", {})),
        "<h2 id='rejections'>Why clips were left out</h2>",
        bar_chart("clips", [(k, {"clips": v}) for k, v in s.reasons.most_common()])
        if s.reasons
        else "<p class='empty'>No clip was left out.</p>",
        "<h2 id='flags'>Automatic flags</h2>",
        bar_chart("share of flagged clips that raised each flag", flag_bars, percent=True)
        if s.flagged
        else "<p class='empty'>No clip flagged yet (nwt-data flag).</p>",
        "<h2 id='mask'>Masked share of the frame</h2>",
        histogram(
            "mean painted share of the frame, prepared clips",
            s.masked,
            lo=0.0,
            hi=max(0.05, max(s.masked, default=0)),
        ),
        "<h2 id='speech'>Speech ratio</h2>",
        histogram("share of the clip the VAD calls speech", s.speech, lo=0.0, hi=1.0, bins=20),
        f"<h2 id='sheets'>Contact sheets ({len(tiles)} sampled clips)</h2>",
        "<p>The middle frame of each clip's kept window; red: the boxes <code>nwt-data mask</code> paints"
        " white; yellow: the clip's flags. Click a frame to open the clip file.</p>",
        "<div class='sheet'>",
    ]
    for t in tiles:
        data = base64.b64encode(t.jpeg).decode()
        parts.append(f"<div class='tile'><a href='{_esc(t.href)}'><img alt='{_esc(t.clip_id)}'"
                     f" src='data:image/jpeg;base64,{data}'></a>{_esc(t.caption)}</div>")  # fmt: skip
    parts += ["</div></body></html>"]
    return "\n".join(parts)
