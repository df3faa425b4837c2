"""Split guarantees for every dataset size (1 to 50 clips), and stability as episodes are added."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from nwt_data.curation.splits import assign_splits, parse_ratios
from nwt_data.errors import ConfigError

SHAPES = {
    "one episode": lambda n: [n],
    "one clip per episode": lambda n: [1] * n,
    "pairs": lambda n: [2] * (n // 2) + [1] * (n % 2),
    "uneven": lambda n: _uneven(n),
}


def _uneven(n: int) -> list[int]:
    sizes, left, k = [], n, 1
    while left > 0:
        sizes.append(min(k, left))
        left -= sizes[-1]
        k = k % 7 + 3
    return sizes


def _clips(sizes: list[int]) -> dict[str, tuple[str, None]]:
    return {f"ep{e:03d}_{i:05d}": (f"ep{e:03d}", None) for e, size in enumerate(sizes) for i in range(size)}


def _check(final: dict[str, str]) -> Counter[str]:
    counts = Counter(final.values())
    n = len(final)
    assert counts["train"] >= 1
    if n >= 2:
        assert counts["val"] >= 1, counts
    if n >= 3:
        assert counts["test"] >= 1, counts
    return counts


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_val_and_test_are_never_empty_from_three_clips(shape: str) -> None:
    for n in range(1, 51):
        clips = _clips(SHAPES[shape](n))
        result = assign_splits(clips, seed=3, val=0.05, test=0.05)
        assert set(result.assigned) == set(clips)
        counts = _check(result.assigned)
        if shape == "one episode":  # the paper's shares, to a clip, once they exceed the minimum
            for split, share in (("val", 0.05), ("test", 0.05)):
                assert counts[split] <= max(1, round(n * share + 1e-9)), (n, counts)
        assert assign_splits(clips, seed=3, val=0.05, test=0.05) == result  # deterministic
        assert not result.empty


def test_other_ratios_are_honoured() -> None:
    clips = _clips([50, 50])
    counts = Counter(assign_splits(clips, seed=0, val=0.1, test=0.2).assigned.values())
    assert counts == {"train": 70, "val": 10, "test": 20}
    none = Counter(assign_splits(clips, seed=0, val=0.0, test=0.0).assigned.values())
    assert none == {"train": 100}


def test_clips_added_one_by_one_never_move_and_keep_the_guarantees() -> None:
    rng = random.Random(5)
    final: dict[str, str] = {}
    episodes: dict[str, str] = {}
    for step in range(50):
        episode = f"ep{rng.randrange(8):02d}"
        clip = f"{episode}_{step:05d}"
        episodes[clip] = episode
        result = assign_splits({c: (episodes[c], final.get(c)) for c in episodes}, 0, 0.05, 0.05)
        assert set(result.assigned) == {clip}  # only the new clip gets a split
        final.update(result.assigned)
        _check(final)


def test_adding_episodes_moves_nothing() -> None:
    clips = _clips([12, 7, 30, 1, 2])
    first = assign_splits(clips, seed=0, val=0.05, test=0.05).assigned
    grown = {c: (e, first[c]) for c, (e, _) in clips.items()}
    grown.update({f"new{e}_{i:05d}": (f"new{e}", None) for e in range(4) for i in range(9)})
    more = assign_splits(grown, seed=0, val=0.05, test=0.05).assigned
    assert set(more) == {c for c in grown if c.startswith("new")}
    _check({**first, **more})


def test_episodes_with_no_train_clip_are_named() -> None:
    result = assign_splits(_clips([1, 1, 1, 1]), seed=0, val=0.05, test=0.05)
    held = sorted({c.split("_")[0] for c, s in result.assigned.items() if s != "train"})
    assert list(result.held_out_episodes) == held and len(held) == 2
    (warning,) = result.warnings()
    assert "2 episode(s) went wholly to val/test" in warning and all(e in warning for e in held)
    # An episode with more clips keeps a train clip when a single-clip one can give its clip instead.
    mixed = assign_splits(_clips([2, 1, 1]), seed=0, val=0.05, test=0.05)
    assert "ep000" not in mixed.held_out_episodes


def test_old_splits_that_left_test_empty_are_reported() -> None:
    clips = {f"e_{i}": ("e", "train") for i in range(4)} | {"e_9": ("e", None)}
    result = assign_splits(clips, seed=0, val=0.05, test=0.05)
    assert list(result.assigned.values()) == ["val"] and result.empty == ("test",)
    assert any("test split is empty" in w for w in result.warnings())


def test_split_ratios_parse_and_reject() -> None:
    assert parse_ratios("90,5,5") == pytest.approx((0.9, 0.05, 0.05))
    assert parse_ratios("8, 1, 1") == pytest.approx((0.8, 0.1, 0.1))
    for bad in ("90,10", "a,b,c", "0,50,50", "90,-5,15", "nan,1,1"):
        with pytest.raises(ConfigError, match="split ratios"):
            parse_ratios(bad)
