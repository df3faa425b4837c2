"""dVAE-Adv losses and schedules against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nwt_train.losses import (
    codebook_usage,
    critic_loss,
    critic_scores,
    dvae_generator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    gradient_penalty,
    kl_to_uniform,
    mean_score,
    memcode_health,
    split_critic_outputs,
)
from nwt_train.schedules import (
    beta_norm,
    halving_lr,
    kl_beta,
    kl_weight,
    latent_and_input_size,
    learning_rate,
)

# ---- gradient penalty -------------------------------------------------------------------------------


def test_gradient_penalty_linear_critic_is_per_sample() -> None:
    w = torch.tensor([1.2, -1.6, 0.0])  # ||w|| = 2, so every sample's penalty is (2 - 1)^2
    real, fake = torch.randn(4, 3), torch.randn(4, 3)
    penalty = gradient_penalty(lambda x: x @ w, real, fake, weight=10.0)
    # per-sample norms give 10 * (2 - 1)^2 = 10; one norm over the whole batch would give 10 * (4 - 1)^2
    assert penalty.item() == pytest.approx(10.0, rel=1e-6)


def test_gradient_penalty_quadratic_critic_at_fixed_eps() -> None:
    # f(x) = Σ x², ∇f(x̂) = 2x̂, x̂ = eps·real + (1 - eps)·fake
    real = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    fake = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    eps = torch.tensor([0.5, 0.25])
    # sample 0: x̂ = (2, 0), ∇ = (4, 0), (4 - 1)² = 9; sample 1: x̂ = (0, .25), ∇ = (0, .5), (.5 - 1)² = .25
    penalty = gradient_penalty(lambda x: (x**2).sum(dim=1), real, fake, weight=10.0, eps=eps)
    assert penalty.item() == pytest.approx(10.0 * (9.0 + 0.25) / 2)


def test_gradient_penalty_mean_reduces_score_maps_and_takes_tuples() -> None:
    # identity "critic" whose score map is x itself (B, 2, 3, 4): mean over 24 elements, ∇ = 1/24 each
    real, fake = torch.randn(2, 2, 3, 4), torch.randn(2, 2, 3, 4)
    penalty = gradient_penalty(lambda x: (x, [x]), real, fake, weight=1.0)
    assert penalty.item() == pytest.approx((1 / math.sqrt(24) - 1) ** 2, rel=1e-6)


def test_gradient_penalty_trains_the_critic_not_the_generator() -> None:
    critic = nn.Linear(3, 1)
    real = torch.randn(5, 3)
    fake = torch.randn(5, 3, requires_grad=True)
    gen = torch.Generator().manual_seed(0)
    penalty = gradient_penalty(lambda x: critic(x).squeeze(1), real, fake, generator=gen)
    penalty.backward()
    assert critic.weight.grad is not None and critic.weight.grad.abs().sum() > 0
    assert fake.grad is None
    # same generator seed, same interpolates, same value
    again = gradient_penalty(
        lambda x: critic(x).squeeze(1), real, fake, generator=torch.Generator().manual_seed(0)
    )
    assert again.item() == pytest.approx(penalty.item())


def test_gradient_penalty_sums_over_a_list_of_critics() -> None:
    w1, w2 = torch.tensor([3.0, 4.0]), torch.tensor([0.6, 0.8])  # norms 5 and 1
    real, fake = torch.randn(3, 2), torch.randn(3, 2)

    def critics(x: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        return [(x @ w1, [x]), (x @ w2, [x])]

    # per critic: 10 * (5 - 1)^2 = 160 and 10 * (1 - 1)^2 = 0; the gradient of their sum would be (3.6, 4.8)
    assert gradient_penalty(critics, real, fake).item() == pytest.approx(160.0, rel=1e-6)


# ---- WGAN terms ---------------------------------------------------------------------------------------


def test_wgan_losses_sum_over_critics_of_map_means() -> None:
    real = [torch.full((2, 1, 3, 3), 2.0), torch.full((2, 5), 1.0)]
    fake = [torch.full((2, 1, 3, 3), -1.0), torch.full((2, 5), 0.5)]
    assert critic_loss(real, fake).item() == pytest.approx((-1.0 - 2.0) + (0.5 - 1.0))
    assert generator_adversarial_loss(fake).item() == pytest.approx(1.0 + -0.5)
    # the critics' (scores, features) outputs are accepted as they are
    outs = [(f, [torch.zeros(2, 3)]) for f in fake]
    assert critic_loss([(r, []) for r in real], outs).item() == pytest.approx(-3.5)
    assert generator_adversarial_loss(outs).item() == pytest.approx(0.5)
    assert mean_score(outs).item() == pytest.approx((-1.0 + 0.5) / 2)
    assert len(critic_scores(outs[0])) == 1 and len(critic_scores(fake)) == 2
    scores, features = split_critic_outputs(outs)
    assert scores[1] is fake[1] and len(features) == 2 and len(features[0]) == 1


# ---- feature matching ---------------------------------------------------------------------------------


def test_feature_matching_zero_for_identical_and_gradient_only_to_fake() -> None:
    real = [[torch.randn(2, 4, 5, 5, requires_grad=True), torch.randn(2, 8, 3, 3, requires_grad=True)]]
    fake_same = [[t.detach().clone().requires_grad_(True) for t in real[0]]]
    assert feature_matching_loss(real, fake_same).item() == 0.0

    fake = [[(t.detach() + 1.0).requires_grad_(True) for t in real[0]]]
    loss = feature_matching_loss(real, fake)
    loss.backward()
    assert all(t.grad is None for t in real[0])
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in fake[0])


def test_feature_matching_sums_map_means_over_layers_and_critics() -> None:
    real = [[torch.zeros(2, 3), torch.zeros(2, 4, 4)], [torch.zeros(1, 7)]]
    fake = [[torch.full((2, 3), 1.0), torch.full((2, 4, 4), -2.0)], [torch.full((1, 7), 0.5)]]
    assert feature_matching_loss(real, fake).item() == pytest.approx(1.0 + 2.0 + 0.5)
    with pytest.raises(ValueError, match="layer 0"):
        feature_matching_loss([[torch.zeros(2, 3)]], [[torch.zeros(2, 4)]])


# ---- KL ----------------------------------------------------------------------------------------------


def test_kl_to_uniform_bounds() -> None:
    k = 8
    assert kl_to_uniform(torch.zeros(2, 3, 4, 4, k)).item() == pytest.approx(0.0, abs=1e-6)
    one_hot_ish = torch.full((2, 3, 4, k), -1e4)
    one_hot_ish[..., 5] = 1e4
    assert kl_to_uniform(one_hot_ish).item() == pytest.approx(math.log(k), rel=1e-6)


def test_kl_to_uniform_matches_torch_kl() -> None:
    logits = torch.randn(3, 2, 6)
    q = torch.distributions.Categorical(logits=logits)
    uniform = torch.distributions.Categorical(logits=torch.zeros(3, 2, 6))
    expected = torch.distributions.kl_divergence(q, uniform).mean()
    assert kl_to_uniform(logits).item() == pytest.approx(expected.item(), rel=1e-5)


def test_dvae_generator_loss_combines_terms() -> None:
    real = [[torch.zeros(2, 3)]]
    fake = [[torch.ones(2, 3, requires_grad=True)]]
    scores = [torch.full((2, 1, 2, 2), 4.0)]
    logits = torch.zeros(2, 3, 8)
    logits[..., 0] = 1e4  # KL = log 8
    terms = dvae_generator_loss(real, fake, scores, logits, beta_norm=0.1, gamma=0.5)
    assert terms["recon"].item() == pytest.approx(1.0)
    assert terms["gan"].item() == pytest.approx(-4.0)
    assert terms["kl"].item() == pytest.approx(math.log(8), rel=1e-6)
    assert terms["loss"].item() == pytest.approx(1.0 + 0.5 * -4.0 + 0.1 * math.log(8), rel=1e-6)
    assert set(terms) == {"loss", "recon", "gan", "kl", "gan_weighted", "kl_weighted", "feature_matching"}


def test_relative_feature_matching_ignores_the_critics_scale() -> None:
    """A critic whose features grow 1000x gives the same relative term; the paper's term grows 1000x."""
    real = torch.tensor([[1.0, -2.0, 3.0, -4.0]])
    fake = real * 0.9
    for scale in (1.0, 1000.0):
        relative = feature_matching_loss([[real * scale]], [[fake * scale]], "relative")
        assert relative.item() == pytest.approx(0.1, rel=1e-5)
    assert feature_matching_loss([[real * 1000]], [[fake * 1000]]).item() == pytest.approx(250.0, rel=1e-5)
    # per sample: a batch of a loud and a quiet clip averages their relative errors
    pair = feature_matching_loss([[torch.stack([real[0], real[0] * 100])]],
                                 [[torch.stack([real[0] * 0.9, real[0] * 50])]], "relative")  # fmt: skip
    assert pair.item() == pytest.approx((0.1 + 0.5) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="feature scale"):
        feature_matching_loss([[real]], [[fake]], "loud")


def test_feature_weight_zero_leaves_the_pixel_term_alone() -> None:
    real, fake = [[torch.zeros(1, 4)]], [[torch.ones(1, 4)]]
    target, reconstruction = torch.zeros(1, 3), torch.full((1, 3), 0.5)
    terms = dvae_generator_loss(real, fake, [torch.zeros(1)], torch.zeros(1, 1, 4), beta_norm=0.0, gamma=0.0,
                                pixel_weight=2.0, feature_weight=0.0, target=target,
                                reconstruction=reconstruction)  # fmt: skip
    assert terms["feature_matching"].item() == pytest.approx(1.0)
    assert terms["recon"].item() == pytest.approx(1.0)  # 0 x 1.0 + 2 x 0.5


# ---- codebook usage -----------------------------------------------------------------------------------


def test_codebook_usage_and_perplexity() -> None:
    # head 0 uses codes 0,1,2,3 once each (uniform over 4 of 8); head 1 always code 7
    indices = torch.tensor([[0, 7], [1, 7], [2, 7], [3, 7]]).view(2, 2, 2)
    usage, perplexity = codebook_usage(indices, 8)
    assert usage.tolist() == [0.5, 0.125]
    assert perplexity.tolist() == pytest.approx([4.0, 1.0])
    # head with p = (1/2, 1/4, 1/4): H = 1.5 ln 2, perplexity 2^1.5
    usage, perplexity = codebook_usage(torch.tensor([[0], [0], [1], [2]]), 4)
    assert usage.tolist() == [0.75]
    assert perplexity.item() == pytest.approx(2**1.5)


# ---- schedules ----------------------------------------------------------------------------------------


def test_kl_beta_is_the_logistic() -> None:
    assert kl_beta(0) == pytest.approx(1 / (1 + math.exp(5.0)))
    assert kl_beta(5000) == 0.5
    assert kl_beta(7000) == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert kl_beta(150_000) == pytest.approx(1.0)
    assert kl_beta(0, midpoint=10, growth=1.0) == pytest.approx(1 / (1 + math.exp(10.0)))
    assert kl_beta(-(10**7)) == 0.0  # no OverflowError far below the midpoint


def test_beta_norm_is_beta_m_over_n() -> None:
    m, n = latent_and_input_size((30, 3, 224, 256), (30, 14, 16), heads=8)
    assert (m, n) == (30 * 14 * 16 * 8, 30 * 3 * 224 * 256)
    assert beta_norm(0.5, latent_size=m, input_size=n) == pytest.approx(0.5 * m / n)
    assert kl_weight(5000, latent_size=10, input_size=1000) == pytest.approx(0.5 * 10 / 1000)
    with pytest.raises(ValueError, match="latent_size"):
        beta_norm(1.0, latent_size=0, input_size=10)


def test_learning_rates() -> None:
    assert learning_rate(0) == 1e-4
    assert learning_rate(10**6) == 1e-4
    assert learning_rate(0, base=1.0, warmup_steps=4) == 0.25
    assert learning_rate(3, base=1.0, warmup_steps=4) == 1.0
    assert learning_rate(100, base=1.0, warmup_steps=4) == 1.0

    assert halving_lr(0) == 1e-4
    assert halving_lr(50_000) == pytest.approx(5e-5)
    assert halving_lr(100_000) == pytest.approx(2.5e-5)
    assert halving_lr(25_000) == pytest.approx(1e-4 * 2**-0.5)
    assert halving_lr(25_000, staircase=True) == 1e-4
    assert halving_lr(99_999, staircase=True) == pytest.approx(5e-5)
    assert halving_lr(250_000) == 1e-5  # 1e-4 / 32 would be below the floor


# ---- score reductions, per-frame penalty, Memcode health -------------------------------------------


def test_sum_reduction_adds_a_samples_windows() -> None:
    real = [torch.full((2, 3, 4), 1.0)]
    fake = [torch.full((2, 3, 4), -0.5)]
    assert critic_loss(real, fake, "sum").item() == pytest.approx(12 * (-0.5 - 1.0))
    assert generator_adversarial_loss(fake, "sum").item() == pytest.approx(12 * 0.5)
    with pytest.raises(ValueError, match="score reduction"):
        critic_loss(real, fake, "max")
    # identity critic on (B, 2, 3, 4): the sum of 24 elements has gradient 1 everywhere, norm sqrt(24)
    x, y = torch.randn(2, 2, 3, 4), torch.randn(2, 2, 3, 4)
    assert gradient_penalty(lambda v: v, x, y, weight=1.0, reduction="sum").item() == pytest.approx(
        (math.sqrt(24) - 1) ** 2, rel=1e-6
    )


def test_per_frame_penalty_takes_one_norm_per_frame() -> None:
    # a "2D critic" on video (B, T, C, H, W) = (2, 3, 1, 2, 2) scoring each frame: 2 x its pixel sum
    def critic(v: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return 2 * v[:, :, 0], [v]  # score map (B, T, 2, 2)

    real, fake = torch.randn(2, 3, 1, 2, 2), torch.randn(2, 3, 1, 2, 2)
    norms: list[torch.Tensor] = []
    # per frame, sum reduction: gradient 2 on each of 4 pixels -> norm 4; per clip: 2 on 12 -> norm sqrt(48)
    frame = gradient_penalty(critic, real, fake, weight=1.0, reduction="sum", per_frame=[True], norms=norms)
    assert frame.item() == pytest.approx(9.0) and norms[0].item() == pytest.approx(4.0)
    clip = gradient_penalty(critic, real, fake, weight=1.0, reduction="sum", per_frame=[False])
    assert clip.item() == pytest.approx((math.sqrt(48) - 1) ** 2, rel=1e-6)


def test_generator_loss_pixel_term() -> None:
    x, y = torch.zeros(2, 3), torch.ones(2, 3)
    terms = dvae_generator_loss([[x]], [[x]], [torch.zeros(2)], torch.zeros(2, 1, 4), beta_norm=0.0,
                                pixel_weight=0.5, target=x, reconstruction=y)  # fmt: skip
    assert terms["pixel"].item() == 1.0 and terms["recon"].item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="needs the target"):
        dvae_generator_loss(
            [[x]], [[x]], [torch.zeros(2)], torch.zeros(2, 1, 4), beta_norm=0.0, pixel_weight=1
        )


def test_memcode_health_separates_argmax_from_samples() -> None:
    # head 0: every position prefers code 2 with q ~ 1; head 1: uniform logits
    logits = torch.zeros(100, 2, 4)
    logits[:, 0, 2] = 30.0
    sampled = torch.stack([torch.full((100,), 2), torch.arange(100) % 4], dim=1)
    health = memcode_health(logits, sampled)
    assert health["argmax_perplexity"][0].item() == pytest.approx(1.0)
    assert health["sampled_perplexity"][1].item() == pytest.approx(4.0)
    assert health["argmax_usage"].tolist() == [0.25, 0.25]  # argmax of ties is code 0
    assert health["max_prob"][0].item() == pytest.approx(1.0) and health["max_prob"][1].item() == 0.25
    assert health["kl"][0].item() == pytest.approx(math.log(4), abs=1e-6) and health["kl"][1].item() == 0
    assert health["agreement"].tolist() == [1.0, 0.25]


def test_health_watch_warns_after_warmup_when_a_head_stays_collapsed() -> None:
    from nwt_train.config import tiny, with_overrides
    from nwt_train.train_dvae import HealthWatch

    watch = HealthWatch(with_overrides(tiny(), {"health_warmup": 20}), warn=print)
    ok = {f"memcodes/argmax_perplexity_head{h}": 5.0 for h in range(4)}
    low = ok | {"memcodes/argmax_perplexity_head2": 1.2}
    assert watch.check(10, low) == [] and watch.check(15, low) == []  # warm-up
    assert watch.check(20, ok) == [] and watch.check(25, low) == []  # once is not "stays"
    (message,) = watch.check(30, low)
    assert "head 2" in message and "1.20" in message
    assert watch.check(35, low) == []  # not every log
