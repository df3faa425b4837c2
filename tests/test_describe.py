"""`nwt-train describe`: the counts are the real models' parameters, per part, for both presets."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from nwt_train.cli.app import app
from nwt_train.config import PRESETS, PRIOR_PRESETS
from nwt_train.models.critics import Critics
from nwt_train.models.dvae import DVAE
from nwt_train.models.prior import Prior


def _describe(*args: str) -> dict:
    result = CliRunner().invoke(app, ["describe", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("preset", ["tiny", "paper"])
@pytest.mark.parametrize("arch", ["far", "mar"])
def test_describe_prior_counts_the_real_model(arch: str, preset: str) -> None:
    described = _describe("prior", "--arch", arch, "--preset", preset)
    config = PRIOR_PRESETS[preset](arch).model
    with torch.no_grad():
        model = Prior(config)  # on the CPU, with real weights: describe builds it on the meta device
    counts = described["parameters"]
    assert counts["total"] == _count(model)
    parts = {"audio_encoder": model.audio, "style_encoder": model.style, "decoder": model.decoder,
             "episode_embedding": model.episodes}  # fmt: skip
    assert {k: counts[k] for k in parts} == {k: _count(m) for k, m in parts.items()}
    grid = described["memcode_grid"]
    assert (grid["height"], grid["width"], grid["heads"]) == (*config.grid, config.heads)
    field = described["receptive_field"]
    assert field["positions"] == config.receptive_positions and field["frames"] == config.receptive_frames
    if preset == "paper":
        # C.2.2: at most 27 frames; Table 3: MAR 216.327 M (FAR: see the README's chosen reading).
        assert 20 <= field["frames"] <= 27
        assert described["paper"]["parameters"] == {"far": 383_484_000, "mar": 216_327_000}[arch]
        if arch == "mar":
            assert abs(counts["total"] / 216.327e6 - 1) < 0.005
            assert field["positions"] == 6139 and field["unit"] == "Memcodes"


@pytest.mark.parametrize("preset", ["tiny", "paper"])
def test_describe_dvae_counts_the_real_model_and_critics(preset: str) -> None:
    described = _describe("dvae", "--preset", preset)
    config = PRESETS[preset]()
    model, critics = DVAE(config.model), Critics(config.critics)
    counts = described["parameters"]
    assert counts["generator"] == _count(model) and counts["critics"] == _count(critics)
    assert counts["total"] == _count(model) + _count(critics)
    assert counts["memcodes"] == _count(model.memcodes) and counts["encoder"] == _count(model.encoder)
    assert described["critics"] == {name: _count(c) for name, c in critics.items()}
    grid = described["memcode_grid"]
    assert (grid["height"], grid["width"]) == config.model.grid_size


def test_describe_follows_overrides_and_prints_a_table() -> None:
    wider = _describe("prior", "--arch", "far", "--preset", "tiny", "--set", "model.channels=64")
    assert wider["parameters"]["total"] > _describe("prior", "--preset", "tiny")["parameters"]["total"]
    literal = _describe(
        "prior",
        "--preset",
        "paper",
        "--set",
        "model.causal_convs=2",
        "--set",
        "model.max_receptive_frames=53",
    )
    assert literal["receptive_field"]["frames"] == 53
    result = CliRunner().invoke(app, ["describe", "prior", "--arch", "mar", "--preset", "paper"])
    assert result.exit_code == 0, result.output
    assert "216,296,992" in result.output and "6,139 Memcodes" in result.output


def test_describe_refuses_an_unknown_model_or_a_too_long_receptive_field() -> None:
    result = CliRunner().invoke(app, ["describe", "gan"])
    assert result.exit_code == 2 and "'gan' is not one of 'dvae', 'prior'" in result.output
    result = CliRunner().invoke(app, ["describe", "prior", "--set", "model.causal_convs=2"])
    assert result.exit_code == 2 and "max_receptive_frames" in result.output
