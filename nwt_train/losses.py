"""dVAE-Adv losses (NWT Section 2.1.2, eq. 6-9; Algorithm 2 in Appendix C.1; C.2.1).

Generator (encoder φ + decoder θ), eq. 8:
    L_gen = L_recon + γ·L_gan + β_norm·KL(q(z|x) || uniform)
    L_recon = Σ_c Σ_l mean |D_c^l(x) - D_c^l(x̃)|      (eq. 7, Laplace likelihood -> L1)
    L_gan   = Σ_c mean(-D_c(x̃))                        (eq. 6)
Critics, eq. 9 (WGAN-GP):
    L_adv = Σ_c [ mean D_c(x̃) - mean D_c(x) + λ·mean_i (||∇_x̂ D_c(x̂_i)||_2 - 1)² ]

"mean" is taken over the batch and every element of a Markovian score or feature map: footnote 3 of
C.2.1 computes the log-likelihood and the KL "in expectation over the individual critic feature maps
and individual Memcodes", with β normalised as in β-VAE (`schedules.beta_norm`).
Critics are assumed to return (score map, hidden feature maps without the output layer).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

GAMMA = 5e-3  # weight of the adversarial term in L_gen (C.2.1)
GP_WEIGHT = 10.0  # λ, gradient penalty weight (C.2.1)

Features = Sequence[Sequence[Tensor]]  # per critic, its hidden feature maps (output layer excluded)
# score tensor(s) or (scores, features) tuple(s): what one critic, or a list of critics, returns
CriticOutputs = Tensor | tuple[Tensor, Sequence[Tensor]] | Sequence[Tensor | tuple[Tensor, Sequence[Tensor]]]


def feature_matching_loss(real_features: Features, fake_features: Features) -> Tensor:
    """L_recon of eq. 7: Σ over critics Σ over hidden layers of mean |D_c^l(x) - D_c^l(x̃)|.

    real_features[c][l] / fake_features[c][l]: layer l of critic c for the target x and for the
    reconstruction x̃, any shape (B, ...), the two sides equal. Each map contributes the mean absolute
    difference over all its elements (batch included); maps are then SUMMED over layers and critics, as
    eq. 7 and Algorithm 2 write, so the value grows with the number of maps (14 for Table 4b).
    The real side is detached: only the reconstruction receives gradient.
    """
    if len(real_features) != len(fake_features):
        raise ValueError(f"{len(real_features)} critics of real features but {len(fake_features)} of fake")
    if not real_features:
        raise ValueError("feature_matching_loss needs at least one critic's features")
    total: Tensor | None = None
    for c, (real_maps, fake_maps) in enumerate(zip(real_features, fake_features, strict=True)):
        if len(real_maps) != len(fake_maps):
            raise ValueError(f"critic {c}: {len(real_maps)} real feature maps but {len(fake_maps)} fake")
        for layer, (real, fake) in enumerate(zip(real_maps, fake_maps, strict=True)):
            if real.shape != fake.shape:
                raise ValueError(
                    f"critic {c} layer {layer}: real {tuple(real.shape)} vs fake {tuple(fake.shape)}"
                )
            term = (fake.float() - real.detach().float()).abs().mean()
            total = term if total is None else total + term
    if total is None:
        raise ValueError("feature_matching_loss got critics without any hidden feature map")
    return total


def generator_adversarial_loss(fake_scores: CriticOutputs) -> Tensor:
    """L_gan of eq. 6: Σ over critics of mean(-D_c(x̃)), the mean over batch and score-map elements.

    fake_scores: one score map per critic (or the critics' (scores, features) outputs).
    """
    scores = critic_scores(fake_scores)
    if not scores:
        raise ValueError("generator_adversarial_loss needs at least one critic's scores")
    return torch.stack([-s.float().mean() for s in scores]).sum()


def critic_loss(real_scores: CriticOutputs, fake_scores: CriticOutputs) -> Tensor:
    """WGAN critic loss of eq. 9 without the penalty: Σ over critics of mean D_c(x̃) - mean D_c(x).

    Scores: one map per critic (or the critics' (scores, features) outputs). The fake scores must come
    from a detached reconstruction so that the critic step leaves the generator alone. Add
    `gradient_penalty` for the full L_adv.
    """
    real_scores, fake_scores = critic_scores(real_scores), critic_scores(fake_scores)
    if len(real_scores) != len(fake_scores) or not real_scores:
        raise ValueError(
            f"need matching, non-empty score lists, got {len(real_scores)} and {len(fake_scores)}"
        )
    terms = [f.float().mean() - r.float().mean() for r, f in zip(real_scores, fake_scores, strict=True)]
    return torch.stack(terms).sum()


def kl_to_uniform(logits: Tensor) -> Tensor:
    """Mean KL(q(z|x) || uniform) per categorical variable, q = softmax(logits) over the codebook.

    logits: (..., heads, K), the Memcodes logits before Gumbel noise (sampling with Gumbel-max is
    sampling from softmax(logits), so this softmax is q(z|x)). Per head: KL = Σ_k q_k log q_k + log K
    = log K - H(q), in [0, log K]. Returns the mean over every leading position and head (eq. 4/8 with
    the uniform prior of Section 2.1.2; averaged "over individual Memcodes", footnote 3). The KL of a
    whole Memcode (heads are independent) is heads × this value; use M = positions·heads in `beta_norm`.
    """
    if logits.dim() < 2:
        raise ValueError(f"logits must be (..., heads, codebook), got shape {tuple(logits.shape)}")
    log_q = torch.log_softmax(logits.float(), dim=-1)
    neg_entropy = (log_q.exp() * log_q).sum(dim=-1)
    return (neg_entropy + math.log(logits.shape[-1])).mean()


def critic_scores(outputs: CriticOutputs) -> list[Tensor]:
    """The score maps of one or several critics' outputs, one tensor per critic.

    Accepts a score tensor, one critic's (scores, features) tuple, or a sequence of either (one entry
    per critic).
    """
    if isinstance(outputs, Tensor):
        return [outputs]
    if len(outputs) == 2 and isinstance(outputs[0], Tensor) and not isinstance(outputs[1], Tensor):
        return [outputs[0]]  # a single critic's (scores, features)
    return [o if isinstance(o, Tensor) else o[0] for o in outputs]


def split_critic_outputs(outputs: Sequence[tuple[Tensor, Sequence[Tensor]]]) -> tuple[list[Tensor], Features]:
    """[(scores, features) per critic] -> ([scores per critic], [features per critic])."""
    return [o[0] for o in outputs], [list(o[1]) for o in outputs]


def mean_score(outputs: CriticOutputs) -> Tensor:
    """Mean over critics of each critic's mean score, for logging (real vs fake scores)."""
    return torch.stack([s.float().mean() for s in critic_scores(outputs)]).mean()


def _per_sample(score: Tensor) -> Tensor:
    """A score map (B, ...) reduced to one value per sample: its mean."""
    return score.float().reshape(score.shape[0], -1).mean(dim=1)


def gradient_penalty(
    critic_fn: Callable[[Tensor], CriticOutputs],
    real: Tensor,
    fake: Tensor,
    *,
    weight: float = GP_WEIGHT,
    eps: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """WGAN-GP term of eq. 9: Σ over critics of weight · mean_i (||∇_x̂ D_c(x̂_i)||_2 - 1)².

    x̂_i = eps_i·real_i + (1 - eps_i)·fake_i with eps_i ~ U(0, 1) per sample (drawn with `generator`,
    or given as `eps` of shape (B,)). real and fake are detached, so the penalty only trains the critic;
    the graph is kept (create_graph) so the penalty can be backpropagated into the critic's weights.

    critic_fn(x) returns a score per sample (B,) or a Markovian score map (B, ...), or a critic's
    (scores, features) tuple, or a sequence of those, one per critic (see `critic_scores`); each critic
    gets its own gradient and penalty, summed as eq. 9 sums over critics. A map is reduced to its MEAN
    per sample, the same reduction the WGAN losses use, so the penalty constrains the function the
    critic is trained on. The gradient norm is per sample, over all non-batch dims of x̂.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} differ")
    batch = real.shape[0]
    if eps is None:
        eps = torch.rand(batch, generator=generator, dtype=torch.float32, device=real.device)
    if eps.shape != (batch,):
        raise ValueError(f"eps must have shape ({batch},), got {tuple(eps.shape)}")
    eps = eps.to(device=real.device, dtype=real.dtype).view(batch, *([1] * (real.dim() - 1)))
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    penalties = []
    for score in critic_scores(critic_fn(x_hat)):
        (grad,) = torch.autograd.grad(_per_sample(score).sum(), x_hat, create_graph=True, retain_graph=True)
        norms = grad.float().reshape(batch, -1).norm(2, dim=1)
        penalties.append(((norms - 1) ** 2).mean())
    return weight * torch.stack(penalties).sum()


def dvae_generator_loss(
    real_features: Features,
    fake_features: Features,
    fake_scores: Sequence[Tensor],
    logits: Tensor,
    *,
    beta_norm: float,
    gamma: float = GAMMA,
) -> dict[str, Tensor]:
    """Eq. 8: loss = recon + gamma·gan + beta_norm·kl, with every term for logging.

    real/fake_features: the critics' hidden maps for x and x̃ (`feature_matching_loss`); fake_scores:
    the critics' score maps for x̃; logits: the Memcodes logits (..., heads, K); beta_norm: the
    annealed, normalised KL weight (`schedules.kl_weight`). Returns "loss", "recon", "gan", "kl",
    "gan_weighted", "kl_weighted" (all 0-dim tensors; only "loss" is meant for backward).
    """
    recon = feature_matching_loss(real_features, fake_features)
    gan = generator_adversarial_loss(fake_scores)
    kl = kl_to_uniform(logits)
    gan_weighted = gamma * gan
    kl_weighted = beta_norm * kl
    return {
        "loss": recon + gan_weighted + kl_weighted,
        "recon": recon,
        "gan": gan,
        "kl": kl,
        "gan_weighted": gan_weighted,
        "kl_weighted": kl_weighted,
    }


@torch.no_grad()
def codebook_usage(indices: Tensor, codebook_size: int) -> tuple[Tensor, Tensor]:
    """Per-head codebook statistics of a batch of Memcodes, for logging.

    indices: (..., heads) int in [0, codebook_size). Returns (usage, perplexity), each (heads,) float32:
    usage = fraction of the codebook's entries picked at least once; perplexity = exp(H(p)) of the
    empirical code frequencies p, from 1 (one code) to codebook_size (all codes equally often).
    """
    if indices.dim() < 1 or indices.numel() == 0:
        raise ValueError(f"indices must be a non-empty (..., heads) tensor, got shape {tuple(indices.shape)}")
    flat = indices.reshape(-1, indices.shape[-1]).long()
    if flat.min() < 0 or flat.max() >= codebook_size:
        raise ValueError(f"indices must lie in [0, {codebook_size})")
    heads = flat.shape[1]
    offsets = torch.arange(heads, device=flat.device) * codebook_size
    counts = torch.bincount((flat + offsets).reshape(-1), minlength=heads * codebook_size)
    counts = counts.view(heads, codebook_size).float()
    probs = counts / counts.sum(dim=1, keepdim=True)
    usage = (counts > 0).float().mean(dim=1)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(dim=1)
    return usage, entropy.exp()
