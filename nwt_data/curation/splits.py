"""Train/val/test splits for datasets of any size (Appendix D step 10), stable as the dataset grows.

Splits are stratified by episode: inside every episode the clips are ordered by a seeded hash of their
ids and the first ~val share go to val, the next ~test share to test, the rest to train. On small
datasets those shares round to zero, so the whole dataset is then topped up: val and test get at least
round(N * share) clips each, and at least one each once the dataset has 3 clips (the second clip ever
assigned goes to val, the third to test), taken from the newly assigned train clips in seeded-hash
order, preferring episodes that keep a train clip. A clip's split is never changed once assigned, so
adding episodes moves nothing. Episodes with no train clip at all are named in a warning: the model's
embedding for such an episode is never trained.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nwt_data.errors import ConfigError

SPLITS = ("train", "val", "test")
HELD_OUT = ("val", "test")
PAPER_RATIOS = (90.0, 5.0, 5.0)


def parse_ratios(text: str) -> tuple[float, float, float]:
    """`90,5,5` (train, val, test; any positive scale) as shares summing to 1."""
    try:
        parts = tuple(float(p) for p in text.replace(" ", "").split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or any(not math.isfinite(p) or p < 0 for p in parts) or parts[0] <= 0:
        raise ConfigError(
            f"cannot read split ratios {text!r}",
            hint="give three numbers train,val,test, train above 0, e.g. --split-ratios 90,5,5",
        )
    total = sum(parts)
    return parts[0] / total, parts[1] / total, parts[2] / total


def ratios_text(config: Any) -> str:
    """A config's val/test fractions as `--split-ratios` text: 0.05 and 0.05 -> `90,5,5`."""
    val, test = 100 * config.val_fraction, 100 * config.test_fraction
    return ",".join(f"{round(share, 6):g}" for share in (100 - val - test, val, test))


def split_rank(seed: int, clip_id: str) -> str:
    return hashlib.sha256(f"{seed}:{clip_id}".encode()).hexdigest()


def _round(x: float) -> int:
    return math.floor(x + 0.5)  # halves round up


@dataclass(frozen=True)
class SplitResult:
    assigned: dict[str, str]  # the newly assigned clips: clip_id -> split
    held_out_episodes: tuple[str, ...]  # episodes with no train clip (all in val and/or test)
    empty: tuple[str, ...]  # val/test splits still empty although the dataset has >= 3 clips

    def warnings(self, limit: int = 10) -> list[str]:
        out = []
        if self.held_out_episodes:
            names = ", ".join(self.held_out_episodes[:limit])
            more = len(self.held_out_episodes) - limit
            out.append(
                f"{len(self.held_out_episodes)} episode(s) went wholly to val/test, so their episode"
                f" embedding is never trained: {names}{f' and {more} more' if more > 0 else ''}"
            )
        for split in self.empty:
            out.append(
                f"the {split} split is empty: every clip already had a split (splits never move);"
                " it fills as clips are added"
            )
        return out


def assign_splits(
    clips: Mapping[str, tuple[str, str | None]], seed: int, val: float, test: float
) -> SplitResult:
    """Splits for the clips without one. `clips` maps every clip of the dataset (assigned or not) to
    (episode_id, split or None); `val` and `test` are shares of the dataset."""
    shares = {"val": val, "test": test}
    by_episode: dict[str, list[str]] = defaultdict(list)
    for clip_id, (episode, _) in clips.items():
        by_episode[episode].append(clip_id)
    current = {c: s for c, (_, s) in clips.items()}
    assigned: dict[str, str] = {}

    # 1. Inside every episode, as the paper's stratified split.
    for episode in sorted(by_episode):
        members = by_episode[episode]
        n = len(members)
        targets = {k: _round(n * f) for k, f in shares.items()}
        if n >= 20:  # a big episode always contributes to both
            targets = {k: max(1, v) if shares[k] > 0 else 0 for k, v in targets.items()}
        have = Counter(current[c] for c in members if current[c])
        for clip_id in sorted((c for c in members if current[c] is None), key=lambda c: split_rank(seed, c)):
            split = next((s for s in HELD_OUT if have[s] < targets[s]), "train")
            have[split] += 1
            assigned[clip_id] = split

    # 2. Over the whole dataset: small episodes round to no val/test at all.
    total = len(clips)
    final = {**current, **assigned}
    counts = Counter(s for s in final.values() if s)
    train_in = Counter(clips[c][0] for c, s in final.items() if s == "train")
    minimum = {"val": 2, "test": 3}  # the dataset size from which a split must not be empty
    for split in HELD_OUT:
        if shares[split] <= 0:
            continue
        target = max(_round(total * shares[split]), 1 if total >= minimum[split] else 0)
        fresh_train = (c for c, s in assigned.items() if s == "train")
        candidates = sorted(fresh_train, key=lambda c: split_rank(seed, c))
        # Prefer clips whose episode keeps another train clip; never take the dataset's last train clip.
        candidates.sort(key=lambda c: train_in[clips[c][0]] <= 1)
        for clip_id in candidates:
            if counts[split] >= target or counts["train"] <= 1:
                break
            episode = clips[clip_id][0]
            assigned[clip_id] = split
            counts[split] += 1
            counts["train"] -= 1
            train_in[episode] -= 1
    final = {**current, **assigned}
    held_out = tuple(
        sorted(e for e, members in by_episode.items() if all(final[c] in HELD_OUT for c in members))
    )
    empty = tuple(s for s in HELD_OUT if shares[s] > 0 and total >= minimum[s] and counts[s] == 0)
    return SplitResult(assigned, held_out, empty)
