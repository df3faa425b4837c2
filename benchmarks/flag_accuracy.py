"""Flag precision and recall on cases with known answers, and the report's cost (used by bench_flags).

Cases: the real clips of ../shared/media (one talking person, large in the frame, one shot, speech;
only vexpress_case10 has an overlay), measured by `measure_clip` in bench_flags' workspace; real
faces pasted at 8-30% of the crop height and in pairs; Silero VAD on real speech (whisper_jfk), speech
over music, three seconds of speech in ten of applause, and generated music, applause, noise and
silence; the generated overlay cases of nwt_data.curation.synthetic through the graphic rule.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from nwt_data.catalog import Catalog
from nwt_data.config import MaskConfig
from nwt_data.curation.overlay import plan_overlays, sample_clip
from nwt_data.curation.report import gather, render, sample_clips
from nwt_data.curation.speech import speech_ratio
from nwt_data.curation.synthetic import applause, cases, music, paste_faces
from nwt_data.media.clip import decode_mono
from nwt_data.stages.flags import ClipMeasures, FlagConfig, decide, face_boxes

RATE = 16_000
BASE = ClipMeasures(frames=100, sampled=14, face_counts=(1,) * 4, cut_score=0.0, overlay_share=0.0, insets=(),
                    voiced_share=0.8, loudest_db=-12.0, graphic=(), face_heights=(0.3,) * 4,
                    speech_ratio=0.8)  # fmt: skip
FLAGS = [c.removeprefix("flag_") for c in Catalog.FLAG_COLUMNS]


class Tally:
    def __init__(self) -> None:
        self.counts: dict[str, dict[str, int]] = defaultdict(lambda: {"tp": 0, "fp": 0, "fn": 0, "tn": 0})

    def add(self, raised: dict[str, bool], truth: set[str], judged: list[str]) -> None:
        for name in judged:
            got, want = raised[f"flag_{name}"], name in truth
            self.counts[name]["tp" if got and want else "fp" if got else "fn" if want else "tn"] += 1

    def table(self) -> Table:
        table = Table(title="flag accuracy on cases with known answers", header_style="bold")
        for column in ("flag", "cases", "TP", "FP", "FN", "TN", "precision", "recall"):
            table.add_column(column, justify="left" if column == "flag" else "right")
        for name in FLAGS:
            c = self.counts.get(name)
            if not c:
                continue
            p = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else float("nan")
            r = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else float("nan")
            table.add_row(name, str(sum(c.values())), *(str(c[k]) for k in ("tp", "fp", "fn", "tn")),
                          f"{p:.2f}", f"{r:.2f}")  # fmt: skip
        return table


def real_clip_truth(episode_id: str) -> set[str]:
    return {"overlay"} if episode_id.startswith("case10") else set()


def portraits(shared: Path) -> list[np.ndarray]:
    import av

    out = []
    for name in (
        "vexpress_AOC_29.97fps.mp4",
        "sadtalker_WDA_KatieHill_mpeg4.mp4",
        "retalking_face2_25fps.mp4",
    ):
        with av.open(str(shared / name)) as container:
            frames = [f.to_ndarray(format="gray") for f in container.decode(video=0)]
        out += frames[::30][:3]
    return out


def accuracy(tally: Tally, shared: Path | None) -> None:
    """Add the generated and pasted cases to `tally` (the real clips are added by the caller)."""
    config = FlagConfig(workers=1)
    face_flags, speech_flags = ["no_face", "many_faces", "small_face"], ["no_speech", "low_speech"]

    def faces_case(frame: np.ndarray, truth: set[str]) -> None:
        found = face_boxes(frame)
        heights = tuple(max(b[3] for b in found) / frame.shape[0] for _ in range(4)) if found else ()
        m = dataclasses.replace(BASE, face_counts=(len(found),) * 4, face_heights=heights)
        tally.add(decide(m, config)[1], truth, face_flags)

    faces_case(np.full((512, 448), 90, np.uint8), {"no_face"})
    if shared is not None:
        people = portraits(shared)
        for share in (0.3, 0.15, 0.1, 0.08):
            for p in people:
                faces_case(paste_faces([p], share), {"small_face"} if share <= 0.1 else set())
        for a, b in zip(people[:3], people[3:6], strict=True):
            faces_case(paste_faces([a, b], 0.15), {"many_faces"})

    rng = np.random.default_rng(1)
    sounds: list[tuple[np.ndarray, int, set[str]]] = [
        (music(6.0), RATE, {"no_speech"}),
        (applause(6.0), RATE, {"no_speech"}),
        (rng.normal(0, 0.05, 6 * RATE).astype(np.float32), RATE, {"no_speech"}),
        (np.zeros(6 * RATE, np.float32), RATE, {"no_speech"}),
    ]
    if shared is not None:
        speech, rate, _ = decode_mono(shared / "whisper_jfk.flac")
        sounds += [
            (speech, rate, set()),
            (speech + 0.5 * np.resize(music(len(speech) / rate, rate), len(speech)), rate, set()),
            (np.concatenate([speech[: 3 * rate], applause(7.0, rate)]), rate, {"low_speech"}),
        ]
    for audio, rate, truth in sounds:
        m = dataclasses.replace(BASE, speech_ratio=speech_ratio(audio, rate))
        tally.add(decide(m, config)[1], truth, speech_flags)

    mask = MaskConfig(workers=1)
    for case in cases():
        frames = zip(case.times, case.frames, strict=True)
        plan = plan_overlays(*sample_clip(frames, 0.0, mask.overlay_fps, mask.text_fps))
        m = dataclasses.replace(BASE, graphic=tuple(b.box for b in plan.boxes))
        tally.add(decide(m, config)[1], {"overlay"} if case.has_overlay else set(), ["overlay"])


def report_cost(clips: int = 100_000) -> tuple[float, float]:
    """CPU seconds to gather and render the report's plots for `clips` catalog rows (no sheets), and
    the same per clip-second of 7.5 s clips."""
    rows: list[dict[str, Any]] = [
        {"clip_id": f"ep{i // 80:05d}_{i % 80:05d}", "episode_id": f"ep{i // 80:05d}",
         "status": "ok" if i % 20 else "too_short", "reason": "kept 1.2 s", "duration": 7.5,
         "review": ("accepted", "rejected", None)[i % 3], "review_reason": "overlay", "split": "train",
         "flag_status": "done", "flags": "no_speech" if i % 7 == 0 else "", "masked_fraction": 0.01 * (i % 5),
         "speech_ratio": (i % 100) / 100}
        for i in range(clips)
    ]  # fmt: skip
    start = time.process_time()
    stats = gather(rows, FLAGS)
    sample_clips([r["clip_id"] for r in rows], 48)
    render("bench", stats, [])
    cpu = time.process_time() - start
    return cpu, cpu / (clips * 7.5)
