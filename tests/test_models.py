"""Memcodes, the dVAE-Adv generator and its critics: shapes, straight-through gradients, presets."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nwt_train.models import (
    DVAE,
    ConvSpec,
    CriticConfig,
    Critics,
    CriticSpec,
    DVAEConfig,
    Memcodes,
    gumbel_noise_like,
    straight_through_one_hot,
)


def small_memcodes(**kw) -> Memcodes:
    args = dict(dim=16, heads=4, codebook_size=8, codebook_dim=12, attention_dim=32, out_dim=24) | kw
    return Memcodes(**args)


def test_memcodes_shapes_and_dtypes():
    torch.manual_seed(0)
    mem = small_memcodes()
    out, indices, logits = mem(torch.randn(2, 3, 5, 7, 16))
    assert out.shape == (2, 3, 5, 7, 24) and out.dtype == torch.float32
    assert indices.shape == (2, 3, 5, 7, 4) and indices.dtype == torch.int64
    assert logits.shape == (2, 3, 5, 7, 4, 8) and logits.dtype == torch.float32
    assert indices.min() >= 0 and indices.max() < 8


def test_memcodes_runs_in_float32_under_autocast():
    mem = small_memcodes()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _, logits = mem(torch.randn(4, 16, dtype=torch.bfloat16))
    assert out.dtype == torch.float32 and logits.dtype == torch.float32


def test_straight_through_forward_is_one_hot_and_backward_is_softmax_gradient():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    noise = gumbel_noise_like(logits, generator=gen).double()
    weights = torch.randn(6, 5, generator=gen, dtype=torch.float64)

    one_hot, indices = straight_through_one_hot(logits, noise)
    # Forward: exactly one-hot at argmax(logits + G).
    assert torch.equal(indices, (logits + noise).argmax(-1))
    assert torch.equal(one_hot.detach(), torch.nn.functional.one_hot(indices, 5).double())
    (grad,) = torch.autograd.grad((one_hot * weights).sum(), logits)

    # Backward: the gradient of softmax(logits + G), by autograd and by hand (J^T w = s * (w - <s, w>)).
    (expected,) = torch.autograd.grad(((logits + noise).softmax(-1) * weights).sum(), logits)
    soft = (logits + noise).softmax(-1).detach()
    by_hand = soft * (weights - (soft * weights).sum(-1, keepdim=True))
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad, by_hand, rtol=0, atol=1e-12)


def test_gumbel_max_samples_from_the_softmax():
    gen = torch.Generator().manual_seed(2)
    logits = torch.tensor([1.0, 0.0, -1.0, 2.0]).expand(50_000, 4)
    _, indices = straight_through_one_hot(logits, gumbel_noise_like(logits, generator=gen))
    freq = torch.bincount(indices, minlength=4).float() / len(indices)
    torch.testing.assert_close(freq, logits[0].softmax(-1), rtol=0, atol=0.01)


def test_memcodes_inference_argmax_is_deterministic_and_decode_indices_matches():
    torch.manual_seed(3)
    mem = small_memcodes().eval()
    x = torch.randn(2, 9, 16)
    out1, idx1, logits = mem(x)
    out2, idx2, _ = mem(x)
    assert torch.equal(idx1, idx2) and torch.equal(out1, out2)
    assert torch.equal(idx1, logits.argmax(-1))
    assert torch.equal(mem.decode_indices(idx1), out1)
    # sample=True draws Gumbel-max samples instead; over 72 draws some differ from the argmax.
    _, sampled, _ = mem(x * 0.01, sample=True)
    assert not torch.equal(sampled, mem(x * 0.01)[1])


def test_memcodes_gradients_reach_queries_and_codebook():
    torch.manual_seed(4)
    mem = small_memcodes().train()
    x = torch.randn(3, 16, requires_grad=True)
    out, _, _ = mem(x)
    (out * torch.randn_like(out)).sum().backward()
    for name, tensor in [
        ("x", x),
        ("codebook", mem.codebook),
        ("to_q", mem.to_q.weight),
        ("to_k", mem.to_k.weight),
    ]:
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0, f"no gradient reached {name}"


def test_paper_preset_maps_a_clip_to_a_16x14x8_grid_and_back():
    config = DVAEConfig.paper()
    assert config.grid_size == (16, 14) and config.bits_per_memcode == 24
    # Full 30-frame clip on the meta device: shapes without compute.
    with torch.device("meta"):
        model = DVAE(config)
        video, episode = torch.empty(2, 30, 3, 256, 224), torch.zeros(2, dtype=torch.long)
        recon, indices, logits = model(video, episode)
        assert recon.shape == video.shape
        assert indices.shape == (2, 30, 16, 14, 8) and logits.shape == (2, 30, 16, 14, 8, 8)
        assert model.decode(indices, episode).shape == video.shape
    # Real kernels: one 256x224 frame through the encoder, a small index grid through the decoder.
    torch.manual_seed(5)
    model = DVAE(config).eval()
    video = torch.rand(1, 1, 3, 256, 224) * 2 - 1
    with torch.inference_mode():
        indices = model.encode(video, sample=False)
        assert indices.shape == (1, 1, 16, 14, 8) and indices.max() < 8
        recon = model.decode(indices[:, :, :4, :3], torch.tensor([214]))
    assert recon.shape == (1, 1, 3, 64, 48) and recon.abs().max() <= 1


def test_tiny_preset_forward_backward():
    torch.manual_seed(6)
    model, critics = DVAE(DVAEConfig.tiny()).train(), Critics(CriticConfig.tiny())
    video, episode = torch.rand(2, 8, 3, 64, 56) * 2 - 1, torch.tensor([0, 3])
    recon, indices, logits = model(video, episode)
    assert recon.shape == video.shape and recon.abs().max() <= 1
    assert indices.shape == (2, 8, 8, 7, 4) and logits.shape == (2, 8, 8, 7, 4, 8)
    # Eq. 7 with a Laplace likelihood: L1 between the critics' hidden features of target and reconstruction.
    real, fake = critics(video), critics(recon)
    loss = sum(
        (a - b).abs().mean() for name in real for a, b in zip(real[name][1], fake[name][1], strict=True)
    ) - 5e-3 * sum(score.mean() for score, _ in fake.values())
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"bad gradient for {name}"
    assert model.encoder.spatial[0][0].conv.weight.grad.abs().sum() > 0, "no gradient through the Memcodes"
    # encode/decode round trip is deterministic with argmax.
    model.eval()
    idx = model.encode(video, sample=False)
    assert torch.equal(idx, model.encode(video, sample=False))
    assert torch.equal(model.decode(idx, episode), model(video, episode)[0])


def test_critics_return_features_and_markovian_scores():
    torch.manual_seed(7)
    config = CriticConfig.tiny()
    critics = Critics(config)
    video = torch.rand(1, 8, 3, 64, 56) * 2 - 1
    out = critics(video)
    expected = {"conv3d": (8, 16, 14), "conv2d_a": (8, 32, 28), "conv2d_b": (8, 16, 14)}
    assert set(out) == set(expected)
    for spec in config.critics:
        score, features = out[spec.name]
        assert score.shape == (1, *expected[spec.name])
        assert len(features) == len(spec.layers)
        for feature, layer in zip(features, spec.layers, strict=True):
            assert feature.shape[:3] == (1, 8, layer.channels)
    # Markovian windows: changing the top-left corner of frame 0 leaves the far windows alone.
    changed = video.clone()
    changed[:, 0, :, :8, :8] = 1.0
    for name, (score, _) in critics(changed).items():
        before = out[name][0]
        assert not torch.equal(score[:, 0, 0, 0], before[:, 0, 0, 0]), f"{name} ignores its window"
        assert torch.equal(score[:, 0, -1, -1], before[:, 0, -1, -1]), f"{name} sees past its window"
        assert torch.equal(score[:, -1], before[:, -1]), f"{name} sees past its frames"


def test_critics_support_the_gradient_penalty():
    torch.manual_seed(8)
    critics = Critics(CriticConfig.tiny())
    x = (torch.rand(2, 4, 3, 64, 56) * 2 - 1).requires_grad_()
    for score, _ in critics(x).values():
        (grad,) = torch.autograd.grad(score.sum(), x, create_graph=True)
        penalty = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
        penalty.backward()
    # Biases do not move the input gradient of a piecewise-linear net; every weight does.
    for name, p in critics.named_parameters():
        if name.endswith("weight"):
            assert p.grad is not None and torch.isfinite(p.grad).all(), f"no penalty gradient for {name}"


def test_critics_paper_preset_shapes():
    with torch.device("meta"):
        out = Critics(CriticConfig.paper())(torch.empty(1, 30, 3, 256, 224))
    assert out["conv3d"][0].shape == (1, 30, 16, 14)
    assert out["conv2d_a"][0].shape == (1, 30, 32, 28)
    assert out["conv2d_b"][0].shape == (1, 30, 4, 4)
    assert [f.shape[2] for f in out["conv2d_b"][1]] == [32, 128, 512, 512, 1024, 1024, 1024]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("heads", 0),
        ("attention_dim", 1020),  # not divisible by 8 heads
        ("stage_blocks", (3, 4, 6)),  # one count short of stage_channels
        ("temporal_kernels", ((4, 2), (2, 2, 2), (2, 2, 2))),
        ("frame_size", (250, 224)),
        ("num_episodes", 0),
        ("negative_slope", -0.1),
    ],
)
def test_dvae_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(DVAEConfig.paper(), **{field: value})


def test_critic_config_validation_names_the_field():
    bad_groups = CriticSpec(
        name="bad", dims=2, layers=(ConvSpec(kernel=(4, 4), stride=(2, 2), channels=8, groups=3),)
    )
    with pytest.raises(ValueError, match=r"critics\['bad'\].layers\[0\].groups"):
        CriticConfig(critics=(bad_groups,))
    bad_dims = CriticSpec(name="flat", dims=1, layers=bad_groups.layers)
    with pytest.raises(ValueError, match=r"critics\['flat'\].dims"):
        CriticConfig(critics=(bad_dims,))
    with pytest.raises(ValueError, match="negative_slope"):
        CriticConfig(negative_slope=-1.0)
