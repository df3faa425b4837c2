"""Training schedules: pure functions of the optimizer step (no state, safe to call on resume).

- `kl_beta`: the KL-annealing weight β, logistic from 0 to 1 (Appendix C.2.1: midpoint 5,000 steps,
  growth rate 1e-3).
- `beta_norm`: β normalised as in β-VAE [Higgins et al. 2017], β_norm = β·M/N (footnote 3 of C.2.1),
  for losses written as means (reconstruction per input value, KL per latent variable).
- `learning_rate`: constant Adam lr with optional linear warmup (dVAE-Adv: 1e-4 constant, C.2.1).
- `halving_lr`: the prior's lr, 1e-4 halved every 50,000 updates down to 1e-5 (C.2.2).
"""

from __future__ import annotations

import math


def kl_beta(step: int, *, midpoint: float = 5000, growth: float = 1e-3) -> float:
    """β(step) = 1 / (1 + exp(-growth · (step - midpoint))).

    Logistic, so it approaches 0 and 1 asymptotically: β(0) = σ(-5) ≈ 0.0067 with the paper's values,
    β(midpoint) = 0.5 and β(15,000) ≈ 0.99995.
    """
    if growth <= 0:
        raise ValueError(f"growth must be > 0, got {growth}")
    z = growth * (step - midpoint)
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)  # stable for very negative z
    return e / (1.0 + e)


def beta_norm(beta: float, *, latent_size: int, input_size: int) -> float:
    """β_norm = β · M / N (β-VAE, Higgins et al. 2017; NWT Appendix C.2.1, footnote 3).

    M (`latent_size`) is the number of latent variables per sample over which the KL is averaged and
    N (`input_size`) the number of input values per sample over which the log-likelihood is averaged.
    Dividing the summed ELBO `N·recon_mean + β·M·kl_mean` by N gives `recon_mean + β_norm·kl_mean`, so
    averaging both terms keeps the balance of the summed objective. With `losses.kl_to_uniform`
    (mean over positions and heads) M = T·h·w·heads; following β-VAE, N = T·C·H·W of the video
    (see `latent_and_input_size`).
    """
    if latent_size <= 0 or input_size <= 0:
        raise ValueError(f"latent_size and input_size must be > 0, got {latent_size} and {input_size}")
    return beta * latent_size / input_size


def latent_and_input_size(
    video_shape: tuple[int, ...], latent_shape: tuple[int, ...], *, heads: int
) -> tuple[int, int]:
    """(M, N) for `beta_norm` from one sample's shapes, batch dim excluded.

    video_shape: e.g. (T, C, H, W) = (30, 3, 224, 256); latent_shape: the Memcode grid without heads,
    e.g. (T, h, w) = (30, 14, 16). M = prod(latent_shape)·heads, N = prod(video_shape).
    """
    if heads <= 0:
        raise ValueError(f"heads must be > 0, got {heads}")
    return math.prod(latent_shape) * heads, math.prod(video_shape)


def kl_weight(
    step: int,
    *,
    latent_size: int,
    input_size: int,
    midpoint: float = 5000,
    growth: float = 1e-3,
) -> float:
    """The weight of the mean KL in the dVAE-Adv loss: beta_norm(kl_beta(step), M, N)."""
    beta = kl_beta(step, midpoint=midpoint, growth=growth)
    return beta_norm(beta, latent_size=latent_size, input_size=input_size)


def learning_rate(step: int, *, base: float = 1e-4, warmup_steps: int = 0) -> float:
    """Constant `base`, ramped linearly over the first `warmup_steps` steps: base·(step+1)/warmup_steps.

    The paper (C.2.1) uses a constant 1e-4 without warmup for both generator and critics.
    """
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if step < warmup_steps:
        return base * (step + 1) / warmup_steps
    return base


def halving_lr(
    step: int,
    *,
    base: float = 1e-4,
    every: int = 50_000,
    floor: float = 1e-5,
    staircase: bool = False,
) -> float:
    """max(floor, base · 0.5^(step / every)): halves every `every` updates, never below `floor`.

    C.2.2 says "exponentially decaying by half every 50,000 updates until it reaches a minimum of 1e-5";
    the default is the continuous decay, `staircase=True` halves in steps (step // every).
    Both agree at multiples of `every`; with the defaults the floor is reached at step ≈ 166,096.
    """
    if every <= 0:
        raise ValueError(f"every must be > 0, got {every}")
    exponent = step // every if staircase else step / every
    return max(floor, base * 0.5**exponent)
