"""`nwt-train encode` and the trainers' output folders under damage: bad samples, cut tars, stale
temporary files, reruns that must give the same bytes, and a second writer on one folder."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nwt_train.cli.app import app
from nwt_train.config import tiny, with_overrides
from nwt_train.runlock import LOCK_NAME, FolderLocked, claim
from nwt_train.train_dvae import train_dvae

pytestmark = pytest.mark.slow


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _samples(tar_path: Path) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(tar_path) as tar:
        for member in tar.getmembers():
            key, _, ext = member.name.partition(".")
            samples.setdefault(key, {})[ext] = tar.extractfile(member).read()  # type: ignore[union-attr]
    return samples


def _write_tar(path: Path, samples: dict[str, dict[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for key, members in samples.items():
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def dvae_run(shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("encode-faults") / "dvae"
    train_dvae(with_overrides(tiny(), {"steps": 2, "log_every": 1, "video_every": 100}), shards, run)
    return run


@pytest.fixture
def three_shards(shards: Path, tmp_path: Path) -> Path:
    """Every clip (train, val and test) spread over three train shards a, b, c (c intact)."""
    description = json.loads((shards / "dataset.json").read_text())
    clips: dict[str, dict[str, bytes]] = {}
    for shard in description["shards"]:
        clips |= _samples(shards / shard["name"])
    keys = sorted(clips)
    assert len(keys) >= 3, keys
    root = tmp_path / "shards"
    root.mkdir()
    parts = {"train-a.tar": keys[:1], "train-b.tar": keys[1:2], "train-c.tar": keys[2:]}
    entries = []
    for name, part in parts.items():
        _write_tar(root / name, {k: clips[k] for k in part})
        entries.append({"name": name, "split": "train", "samples": len(part), "sha256": _sha(root / name)})
    description |= {"shards": entries, "samples": {"train": len(keys)}, "excluded": []}
    (root / "dataset.json").write_text(json.dumps(description))
    return root


def _encode(dvae_run: Path, data: Path, out: Path):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(
        app, ["encode", "--dvae", str(dvae_run), "--data", str(data), "--out", str(out)]
    )


def test_damaged_samples_and_cut_tars_are_one_line_and_later_shards_are_encoded(
    dvae_run: Path, three_shards: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("NWT_DEBUG", raising=False)
    good = {name: (three_shards / name).read_bytes() for name in ("train-a.tar", "train-b.tar")}
    a = _samples(three_shards / "train-a.tar")
    for members in a.values():
        del members["mel.npy"]  # a clip without its mel
    _write_tar(three_shards / "train-a.tar", a)
    cut = good["train-b.tar"]
    (three_shards / "train-b.tar").write_bytes(cut[: len(cut) // 2 + 100])  # a tar cut short
    out = tmp_path / "codes"
    result = _encode(dvae_run, three_shards, out)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and "KeyError" not in result.output
    failures = [line for line in result.output.splitlines() if line.startswith("✗")]
    assert len(failures) == 2, result.output
    assert "lacks its mel.npy member" in failures[0] and "nwt-data shard" in failures[0]
    assert "train-b.tar is damaged" in failures[1] and "nwt-data shard" in failures[1]
    assert (out / "train-c.tar").exists()  # the shard after the damaged ones was encoded
    assert not (out / "train-a.tar").exists() and not (out / "train-b.tar").exists()
    assert not list(out.glob(".*.tmp"))

    # Repaired shards: the next run encodes just those and the set is complete.
    for name, data in good.items():
        (three_shards / name).write_bytes(data)
    again = _encode(dvae_run, three_shards, out)
    assert again.exit_code == 0, again.output
    assert json.loads((out / "codes.json").read_text())["complete"]


def test_reruns_give_the_same_bytes_and_stale_temporaries_go(
    dvae_run: Path, three_shards: Path, tmp_path: Path
) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    assert _encode(dvae_run, three_shards, first).exit_code == 0
    second.mkdir()
    stale = [second / ".train-a.tar.1234abcd.tmp", second / ".codes.json.99999999.tmp"]
    for path in stale:
        path.write_bytes(b"left by a killed run")
    assert _encode(dvae_run, three_shards, second).exit_code == 0
    assert not any(path.exists() for path in stale)
    for name in ("train-a.tar", "train-b.tar", "train-c.tar"):
        assert _sha(first / name) == _sha(second / name), name  # fixed member times
    with tarfile.open(first / "train-c.tar") as tar:
        assert {m.mtime for m in tar.getmembers()} == {0}


def test_a_second_writer_is_refused_and_a_stale_lock_is_taken_over(
    dvae_run: Path, three_shards: Path, tmp_path: Path, shards: Path, monkeypatch
) -> None:
    monkeypatch.delenv("NWT_DEBUG", raising=False)
    out = tmp_path / "codes"
    with claim(out, "encode"):  # a live holder (another open file description: flock conflicts)
        refused = _encode(dvae_run, three_shards, out)
        with pytest.raises(FolderLocked, match=f"pid and host: {os.getpid()}"), claim(out, "encode"):
            pass
    assert refused.exit_code == 2 and "is in use by another encode" in refused.output, refused.output
    assert not (out / "train-a.tar").exists()

    (out / LOCK_NAME).write_text("999999 a-host-that-died\n")  # stale: nobody holds the flock
    assert _encode(dvae_run, three_shards, out).exit_code == 0
    assert (out / "train-c.tar").exists()

    run = tmp_path / "run"
    config = with_overrides(tiny(), {"steps": 1, "log_every": 1, "video_every": 100})
    with claim(run, "trainer"), pytest.raises(FolderLocked, match="in use by another trainer"):
        train_dvae(config, shards, run)
    (run / ".latest.pt.0badf00d.tmp").write_bytes(b"a checkpoint save killed half-way")
    train_dvae(config, shards, run)
    assert (run / "latest.pt").exists() and not list(run.glob(".*.tmp"))


def test_a_failed_fresh_start_leaves_no_folder(tmp_path: Path) -> None:
    out = tmp_path / "new"
    with pytest.raises(RuntimeError), claim(out, "encode"):
        raise RuntimeError("bad input found after the lock")
    assert not out.exists()
