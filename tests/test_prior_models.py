"""The FAR and MAR priors: causal, the cached incremental steps equal the full pass, sizes as Tables 5/6."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nwt_train.models.prior import Prior, PriorConfig, SpatiallyConnected3d, style_kl

FRAMES = 6


def far_variant() -> PriorConfig:
    """Tiny FAR with the paper's other shapes: two downsamplings (a stride-1 Conv2D each way), a 3x1x1
    row, and both convolutions of each block looking back in time."""
    return dataclasses.replace(
        PriorConfig.tiny("far"),
        downsample=2,
        upsample_channels=(32,),
        stages=(((1, 48, 2), (2, 32, 1)), ((1, 48, 2),)),
        causal_convs=2,
    )


CONFIGS = {
    "far": lambda: PriorConfig.tiny("far"),
    "mar": lambda: PriorConfig.tiny("mar"),
    "far2": far_variant,
}


def _inputs(config: PriorConfig, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, config.codebook_size, (2, FRAMES, *config.grid, config.heads), generator=g)
    mel = torch.rand(2, config.n_mels, config.mel_per_frame * FRAMES, generator=g, dtype=torch.float64)
    episode = torch.tensor([0, 1])
    z = torch.randn(2, config.style_dim, generator=g, dtype=torch.float64)
    return codes, mel, episode, z


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def model(request: pytest.FixtureRequest) -> Prior:
    torch.manual_seed(0)
    return Prior(CONFIGS[request.param]()).double().eval()


def _raster(t: torch.Tensor) -> torch.Tensor:
    """(B, T, h, w, ...) -> (B, T*h*w, ...): the MAR's generation order."""
    return t.flatten(1, 3)


def test_changing_a_future_element_never_changes_an_earlier_prediction(model: Prior) -> None:
    codes, mel, episode, z = _inputs(model.config)
    with torch.no_grad():
        logits, _ = model(codes, mel, episode, z)
    if model.config.arch == "far":
        changed_at = 3  # frame 3: predictions of frames 0..3 only see frames before them
        edited = codes.clone()
        edited[:, changed_at] = (edited[:, changed_at] + 1) % model.config.codebook_size
        with torch.no_grad():
            after, _ = model(edited, mel, episode, z)
        same, later = slice(0, changed_at + 1), slice(changed_at + 1, None)
        assert torch.equal(after[:, same], logits[:, same])
        assert (after[:, later] - logits[:, later]).abs().max() > 1e-6  # the edit is visible later on
    else:
        changed_at = 2 * 56 + 17  # a Memcode in the middle of frame 2
        flat = _raster(codes).clone()
        flat[:, changed_at] = (flat[:, changed_at] + 1) % model.config.codebook_size
        with torch.no_grad():
            after, _ = model(flat.view_as(codes), mel, episode, z)
        before_flat, after_flat = _raster(logits), _raster(after)
        assert torch.equal(after_flat[:, : changed_at + 1], before_flat[:, : changed_at + 1])
        assert (after_flat[:, changed_at + 1 :] - before_flat[:, changed_at + 1 :]).abs().max() > 1e-6


def test_cached_incremental_steps_give_the_full_pass_logits(model: Prior) -> None:
    codes, mel, episode, z = _inputs(model.config, seed=1)
    decoder = model.decoder
    with torch.no_grad():
        full, _ = model(codes, mel, episode, z)
        conds = decoder.project_conditioning(model.conditioning(mel, episode, z))
        state = decoder.new_state()
        if model.config.arch == "far":
            steps = [decoder.step(codes[:, t - 1] if t else None, conds, t, state) for t in range(FRAMES)]
            incremental = torch.stack(steps, dim=1)
        else:
            flat = _raster(codes)
            positions = range(flat.shape[1])
            steps = [decoder.step(flat[:, p - 1] if p else None, conds, p, state) for p in positions]
            incremental = torch.stack(steps, dim=1).unflatten(1, codes.shape[1:4])
    assert incremental.shape == full.shape
    torch.testing.assert_close(incremental, full, rtol=1e-9, atol=1e-10)


def test_prior_logits_and_gradients_reach_every_part() -> None:
    torch.manual_seed(0)
    model = Prior(PriorConfig.tiny("far"))
    codes, mel, episode, _ = _inputs(model.config)
    logits, kl = model(codes, mel.float(), episode)  # z_l from the posterior: the KL is live
    assert logits.shape == (2, FRAMES, 8, 7, 4, 8) and kl.shape == (2,) and (kl >= 0).all()
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, -2), codes.flatten()) + kl.mean()
    loss.backward()
    for name in ("audio", "style", "episodes", "decoder"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads), name


def test_style_posterior_std_never_drops_below_exp_minus_4() -> None:
    torch.manual_seed(0)
    model = Prior(PriorConfig.tiny("far"))
    with torch.no_grad():
        for layer in model.style.posterior.parameters():
            layer.fill_(0.0)
        model.style.posterior.bias[16:] = -100.0  # ask for a vanishing std
        codes, *_ = _inputs(model.config)
        _, log_std = model.style.posterior_params(codes)
    assert torch.allclose(log_std, torch.full_like(log_std, -4.0))
    zeros = torch.zeros(1, 16)
    assert style_kl(zeros, zeros).item() == 0.0  # N(0, 1) against N(0, 1)
    assert style_kl(torch.ones(1, 16), zeros).item() == pytest.approx(8.0)  # 16 * 0.5 * 1^2


def test_spatially_connected_layers_have_weights_per_position_shared_over_time() -> None:
    torch.manual_seed(0)
    layer = SpatiallyConnected3d(1, 1, (2, 2), kernel=(1, 1, 1)).double()
    x = torch.ones(1, 1, 3, 2, 2, dtype=torch.float64)
    y = layer(x)[0, 0]
    assert torch.equal(y[0], y[1]) and torch.equal(y[1], y[2])  # the same weights at every frame
    assert len(set(y[0].flatten().tolist())) == 4  # a different weight at each of the 4 positions


@pytest.mark.parametrize("arch", ["far", "mar", "far2"])
def test_receptive_positions_is_how_far_back_an_edit_reaches(arch: str) -> None:
    """An edited element changes the prediction receptive_positions later and none after it."""
    torch.manual_seed(0)
    config = dataclasses.replace(CONFIGS[arch](), max_receptive_frames=10**6)
    model = Prior(config).double().eval()
    reach, per_frame = config.receptive_positions, config.positions_per_frame
    frames = (reach + 3) // per_frame + 2
    g = torch.Generator().manual_seed(2)
    codes = torch.randint(0, config.codebook_size, (1, frames, *config.grid, config.heads), generator=g)
    mel = torch.rand(1, config.n_mels, config.mel_per_frame * frames, generator=g, dtype=torch.float64)
    episode, z = torch.tensor([0]), torch.zeros(1, config.style_dim, dtype=torch.float64)
    edited = codes.clone()
    first = edited[:, 0] if config.arch == "far" else edited.view(1, -1, config.heads)[:, 0]
    first.add_(1).remainder_(config.codebook_size)  # the first element: frame 0, or Memcode 0
    with torch.no_grad():
        before, _ = model(codes, mel, episode, z)
        after, _ = model(edited, mel, episode, z)
    # Per element (frame for FAR, Memcode for MAR): did any logit move at all?
    moved = (after != before).flatten(2 if config.arch == "far" else 4).any(-1).flatten(1)[0]
    assert moved[reach] and not moved[reach + 1 :].any()
    assert config.receptive_frames == reach // per_frame


def _count(config: PriorConfig) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in Prior(config).parameters())


def test_paper_presets_follow_tables_5_and_6() -> None:
    far, mar = PriorConfig.paper("far"), PriorConfig.paper("mar")
    assert far.padded_grid == (16, 16) and far.condition_grid == (4, 4)  # 16x14 padded to 16x16, C.2.2
    assert mar.padded_grid == (16, 14) and mar.condition_grid == (16, 14)
    assert len(mar.upsample_channels) == 4 and len(far.upsample_channels) == 2  # NNU stages of the tables
    assert far.audio_channels == (256, 256, 256, 512, 512, 512, 1024)
    # Table 3: MAR 216.327 M. Two convolutions per residual row, per-head embeddings concatenated.
    assert abs(_count(mar) / 216.327e6 - 1) < 0.005
    # C.2.2: at most 27 frames back. MAR: 1 + 2 * 3 * (1 + 2 + ... + 512) = 6139 Memcodes = 27.4 frames.
    assert mar.receptive_positions == 6139 and mar.receptive_frames == 27
    assert far.receptive_positions == far.receptive_frames == 27 and far.causal_convs == 1
    # FAR's literal reading (both convolutions look back) matches Table 3 less badly, but sees 53 frames.
    literal = dataclasses.replace(far, causal_convs=2, max_receptive_frames=53)
    assert literal.receptive_frames == 53 and _count(far) < _count(literal) < 383.484e6
    with pytest.raises(ValueError, match="max_receptive_frames"):
        dataclasses.replace(far, causal_convs=2)
    with pytest.raises(ValueError, match="max_receptive_frames"):
        PriorConfig(stages=(((1, 64, 2), (8, 64, 2), (8, 64, 1)),))  # 1 + 2 * 17 = 35 frames
    with pytest.raises(ValueError, match="spatial kernel must be 1"):
        dataclasses.replace(mar, stages=(((1, 64, 2),),))
    with pytest.raises(ValueError, match="arch"):
        PriorConfig(arch="har")
