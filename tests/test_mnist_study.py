"""`nwt-train mnist-study` end to end on a tiny IDX folder, the IDX checks, and the Hamming 1-NN rule."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from nwt_train.cli.app import app
from nwt_train.mnist.config import EXPERIMENTS, StudyConfig
from nwt_train.mnist.data import MnistDataError, load_mnist, write_idx
from nwt_train.mnist.study import code_majority_accuracy, hamming_nearest, hamming_neighbours

REAL_MNIST = Path("/work/shared/mnist")


def fake_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n 28x28 uint8 images: digit d is a bright bar at a digit-specific place, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 40, size=(n, 28, 28), dtype=np.uint8)
    for i, d in enumerate(labels):
        row = 3 + 2 * int(d)
        images[i, row : row + 3, 4:24] = 255
    return images, labels


@pytest.fixture
def fake_mnist(tmp_path: Path) -> Path:
    folder = tmp_path / "mnist"
    write_idx(folder, *fake_digits(300, 0), split="train")
    write_idx(folder, *fake_digits(100, 1), split="t10k")
    return folder


def test_study_end_to_end_through_the_command(fake_mnist: Path, tmp_path: Path) -> None:
    out = tmp_path / "study"
    args = ["mnist-study", "--data", str(fake_mnist), "--out", str(out), "--no-verify-md5"]
    # One thread: with a second busy process on two cores, two OpenMP threads mostly wait for each other.
    options = ["--steps", "3", "--batch-size", "16", "--seed", "7", "--threads", "1"]
    result = CliRunner().invoke(app, [*args, *options])
    assert result.exit_code == 0, result.output

    report = json.loads((out / "results.json").read_text())
    assert report["config"]["steps"] == 3 and report["config"]["seed"] == 7
    assert all(r["steps"] == 3 for r in report["results"].values())
    assert report["seeds"] == {e: 7 + i for i, e in enumerate(EXPERIMENTS)}
    results = report["results"]
    assert list(results) == list(EXPERIMENTS)
    a1 = results["a1-occupancy"]
    assert a1["possible_codes"] == 46**2 and a1["train_images"] == 300
    assert 1 <= a1["occupied_codes"] <= 300
    assert a1["occupancy_pct"] == pytest.approx(100 * a1["occupied_codes"] / 46**2)
    for name in ("a2-elbo", "a2-gen", "a2-class"):
        assert 0 <= results[name]["hamming_nn_accuracy_pct"] <= 100
        assert 1 <= results[name]["distinct_train_codes"] <= 2**11
    assert 0 <= results["a2-class"]["critic_classifier_accuracy_pct"] <= 100
    assert len(results["a1-heads"]["codes_used_per_head"]) == 4

    # Every figure decodes as a PNG of the size its layout implies.
    cell, sizes = 28 + 1, {}
    for result in results.values():
        for name in result["figures"]:
            with Image.open(out / name) as image:
                image.load()
                assert image.format == "PNG"
                sizes[name] = image.size
    assert sizes["a1_occupancy_decodings.png"] == (46 * cell + 1, 46 * cell + 1)
    assert sizes["a1_occupancy_map.png"] == (46 * 10 + 70, 46 * 10)
    # Figure 4: the query column plus 10 neighbours, one row per digit (all 10 are in the test set).
    framed = 28 + 4 + 1
    for name in ("a2_elbo_neighbours.png", "a2_gen_neighbours.png", "a2_class_neighbours.png"):
        assert sizes[name] == (1 + 32 + 6 + 10 * framed, 10 * framed + 1)
    # Head control: per head a label strip and 6 rows of input, reconstruction and 46 head values.
    assert sizes["a1_heads_control.png"] == ((2 + 46) * cell + 1, 4 * (14 + 6 * cell + 1))

    table = (out / "results.md").read_text()
    assert "| experiment | metric | ours | paper |" in table
    for name in EXPERIMENTS:
        assert f"| {name} |" in table
    assert "| 83.0 |" in table and "| 94.7 |" in table
    assert "lowest training-set index" in table
    # Every row of both tables has as many cells as its header (a 5-column header once sat over 6 cells).
    tables = [[row for row in block.splitlines() if row.startswith("|")] for block in table.split("\n\n")]
    tables = [rows for rows in tables if rows]
    assert len(tables) == 2
    for rows in tables:
        assert all(row.count("|") == rows[0].count("|") for row in rows), rows
    assert "| a2-gen | 11 x 2 | adv | relative | 0 |" in table
    assert "| a2-class | 11 x 2 | class | paper | 1000 |" in table
    for name in EXPERIMENTS:
        assert (out / "models" / f"{name}.pt").is_file()


def test_chosen_experiments_only(fake_mnist: Path, tmp_path: Path) -> None:
    out = tmp_path / "one"
    args = ["mnist-study", "--data", str(fake_mnist), "--out", str(out), "--no-verify-md5"]
    options = ["--experiment", "a2-elbo", "--steps", "2", "--train-size", "50", "--test-size", "20"]
    options += ["--threads", "1"]
    result = CliRunner().invoke(app, [*args, *options])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "results.json").read_text())
    assert list(report["results"]) == ["a2-elbo"]
    assert report["config"]["train_size"] == 50 and report["train_images"] == 50
    assert sorted(p.name for p in out.glob("*.png")) == ["a2_elbo_neighbours.png"]


def _error(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


def test_missing_folder_is_a_one_line_error(tmp_path: Path) -> None:
    message = _error(["mnist-study", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert "lacks train-images-idx3-ubyte.gz" in message and "--data" in message
    assert not (tmp_path / "o" / "results.json").exists()


def test_corrupt_files_are_one_line_errors(fake_mnist: Path, tmp_path: Path) -> None:
    base = ["mnist-study", "--data", str(fake_mnist), "--out", str(tmp_path / "o")]
    # The tiny folder is structurally fine but is not the published MNIST.
    assert "MD5" in _error(base)

    labels = fake_mnist / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[3] = 0x03  # the image magic number 2051 in a labels file
    labels.write_bytes(gzip.compress(bytes(raw)))
    assert "magic number 2051, expected 2049" in _error([*base, "--no-verify-md5"])

    (fake_mnist / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    assert "not a readable gzip file" in _error([*base, "--no-verify-md5"])


def test_truncated_and_mismatched_files(fake_mnist: Path, tmp_path: Path) -> None:
    images, labels = fake_digits(40, 2)
    write_idx(tmp_path / "short", images, labels[:39], split="train")
    write_idx(tmp_path / "short", images, labels, split="t10k")
    with pytest.raises(MnistDataError, match="40 images but 39 labels"):
        load_mnist(tmp_path / "short", verify_md5=False)
    path = fake_mnist / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-5]))
    with pytest.raises(MnistDataError, match="header promises 300 items"):
        load_mnist(fake_mnist, verify_md5=False)


def test_bad_options_are_one_line_errors(fake_mnist: Path, tmp_path: Path) -> None:
    base = ["mnist-study", "--data", str(fake_mnist), "--out", str(tmp_path / "o"), "--no-verify-md5"]
    # An unknown experiment is refused by the option's listed choices, before the study starts.
    refused = CliRunner().invoke(app, [*base, "--experiment", "a3"])
    assert refused.exit_code == 2 and "'a3' is not one of 'a1-occupancy'" in refused.output
    with pytest.raises(ValueError, match=r"unknown experiment\(s\) a3"):
        StudyConfig(data="d", out="o", experiments=("a3",))
    assert "train_size 301 exceeds the 300 training images" in _error([*base, "--train-size", "301"])
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        StudyConfig(data="d", out="o", batch_size=0)


def test_hamming_nearest_ties_go_to_the_lowest_training_index() -> None:
    train = torch.tensor([[1, 1, 0], [0, 0, 0], [0, 0, 0], [1, 1, 1], [0, 1, 1]])
    queries = torch.tensor([[0, 0, 0], [0, 0, 1], [1, 1, 1], [1, 0, 1], [0, 1, 0]])
    index, distance = hamming_nearest(train, queries, chunk=3)
    # [0,0,0]: exact matches 1 and 2 -> 1. [0,0,1]: 1, 2 and 4 are one head away -> 1.
    # [1,0,1]: only 3 is one head away. [0,1,0]: 0, 1, 2 and 4 are one head away -> 0.
    assert index.tolist() == [1, 1, 3, 3, 0]
    assert distance.tolist() == [0, 1, 0, 1, 1]
    # Scanning every training image by (distance, index) gives the same first neighbour.
    assert hamming_neighbours(train, queries, 1)[:, 0].tolist() == index.tolist()
    assert hamming_neighbours(train, queries[:1], 5)[0].tolist() == [1, 2, 0, 4, 3]


@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason="the real MNIST folder is not on this machine")
def test_real_mnist_folder_passes_every_check() -> None:
    mnist = load_mnist(REAL_MNIST)
    assert mnist.train_images.shape == (60_000, 28, 28) and mnist.test_images.shape == (10_000, 28, 28)
    assert np.bincount(mnist.test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert np.bincount(mnist.train_labels).sum() == 60_000


def test_steps_default_per_experiment() -> None:
    config = StudyConfig(data="d", out="o")
    assert config.steps_of("a1-occupancy") == 6000 and config.steps_of("a2-class") == 3000
    assert StudyConfig(data="d", out="o", steps=5).steps_of("a1-occupancy") == 5


def test_each_experiment_takes_its_own_settings_unless_given() -> None:
    config = StudyConfig(data="d", out="o")
    assert config.setting("a2-gen", "feature_matching") == "relative"
    assert config.setting("a2-class", "feature_matching") == "paper"
    assert config.setting("a2-class", "critic_warmup") == 1000
    assert config.setting("a2-gen", "critic_warmup") == 0
    given = StudyConfig(data="d", out="o", feature_matching="paper", critic_warmup=5)
    assert given.setting("a2-gen", "feature_matching") == "paper"
    assert given.setting("a2-class", "critic_warmup") == 5
    with pytest.raises(ValueError, match="feature_matching must be paper or relative"):
        StudyConfig(data="d", out="o", feature_matching="pixels")
    with pytest.raises(ValueError, match="critic_warmup must be an integer >= 0"):
        StudyConfig(data="d", out="o", critic_warmup=-1)


def test_code_majority_accuracy_votes_each_code_and_counts_unseen_codes_wrong() -> None:
    train = torch.tensor([[0, 0], [0, 0], [0, 0], [1, 1], [1, 0]])
    train_labels = torch.tensor([3, 3, 5, 2, 7])
    test = torch.tensor([[0, 0], [1, 1], [0, 1], [1, 0]])
    # [0,0] votes 3 (right), [1,1] votes 2 (wrong), [0,1] has no training image (wrong), [1,0] votes 7.
    assert code_majority_accuracy(train, train_labels, test, torch.tensor([3, 1, 3, 7])) == 0.5
