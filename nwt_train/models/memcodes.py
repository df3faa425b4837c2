"""Memcodes: multi-head hard attention over a learned codebook (NWT Section 2.1.1, Algorithm 1, B.1.2).

Each position of the encoder output queries a small codebook e (N x D) with h heads. Per head the
logits are the scaled dot products QK^T / sqrt(d_k) between the projected query and the projected
codebook rows; one row is picked (Gumbel-max sampling in training, argmax or sampling at inference)
and its projected value is read. A Memcode is the h picked indices: with the paper's 8 heads over a
codebook of 8 it carries 8 * log2(8) = 24 bits.

Health at initialisation (`normalize=True`, the default of the presets): with the paper's plain dot
product the first logits are ~0.01 apart while the Gumbel noise has std 1.28, so the first codes are
pure noise and a codebook can freeze or collapse before the encoder learns anything. Queries and keys
are therefore normalised per head (parameter-free, per sample: safe under DDP) and their scaled dot
product is multiplied by a learned temperature that starts at `logit_std`, so the first logits are as
spread as the noise and the encoder can sharpen them as it learns. `normalize=False` is the paper's form.

Shapes (`...` is any batch/grid prefix, e.g. B, T, H', W'):
    x        (..., dim)                    encoder features (the queries)
    out      (..., out_dim)                features read from the codebook (decoder input)
    indices  (..., heads)                  int64 in [0, codebook_size)
    logits   (..., heads, codebook_size)   float32, before any Gumbel noise (for the KL term)
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import Tensor, nn


def gumbel_noise_like(logits: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """G = -log(-log(u)), u ~ U(0, 1), in float32; u is clamped away from 0 and 1 so G stays finite."""
    u = torch.rand(logits.shape, device=logits.device, dtype=torch.float32, generator=generator)
    u = u.clamp(torch.finfo(torch.float32).tiny, 1.0 - torch.finfo(torch.float32).eps)
    return -torch.log(-torch.log(u))


def straight_through_one_hot(logits: Tensor, noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Algorithm 1: one-hot of argmax(softmax(logits + noise)) with the gradient of that softmax.

    logits: (..., n); noise: (..., n) Gumbel noise for sampling, or None for argmax.
    Returns (one_hot, indices): one_hot (..., n) is exactly 0/1 in the forward pass and has the
    gradient of softmax(logits + noise) in the backward pass; indices (..., n) int64 -> (...,).

    Algorithm 1 writes SG(onehot - a) + a, whose forward can be off by a rounding error;
    onehot + (a - SG(a)) has the same gradient and is exactly one-hot (a - a == 0 in floating point).
    """
    noisy = logits if noise is None else logits + noise
    soft = noisy.softmax(dim=-1)
    indices = noisy.argmax(dim=-1)  # argmax of the softmax = argmax of its input, without saturation ties
    hard = torch.zeros_like(soft).scatter_(-1, indices.unsqueeze(-1), 1.0)
    return hard + (soft - soft.detach()), indices


def _float32_region(device: torch.device) -> contextlib.AbstractContextManager:
    """Disable autocast on `device` (nothing to disable on devices without autocast, e.g. meta)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


class Memcodes(nn.Module):
    """Multi-head hard attention discretization layer; runs in float32 whatever the autocast state.

    Paper preset (Table 4a): dim=512, heads=8, codebook_size=8, codebook_dim=1024, attention_dim=1024,
    out_dim=1024.
    """

    def __init__(
        self,
        *,
        dim: int,
        heads: int,
        codebook_size: int,
        codebook_dim: int,
        attention_dim: int,
        out_dim: int,
        normalize: bool = False,
        logit_std: float = 1.28,
    ) -> None:
        super().__init__()
        assert logit_std > 0, f"logit_std must be positive, got {logit_std}"
        assert attention_dim % heads == 0, f"attention_dim {attention_dim} must be divisible by heads {heads}"
        self.heads = heads
        self.codebook_size = codebook_size
        self.head_dim = attention_dim // heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.normalize = normalize
        # log of the learned temperature; unit-variance q and k give logits of std ~1 at the start.
        self.log_temperature = nn.Parameter(torch.tensor(math.log(logit_std))) if normalize else None

        # e in R^{N x D}; unit-variance init (the paper does not say how e is initialised).
        self.codebook = nn.Parameter(torch.randn(codebook_size, codebook_dim))
        self.to_q = nn.Linear(dim, attention_dim)
        self.to_k = nn.Linear(codebook_dim, attention_dim)
        self.to_v = nn.Linear(codebook_dim, attention_dim)
        # Output projection W^O of multi-head attention [56]; "MHA, 1024" in Table 4a is its width.
        self.to_out = nn.Linear(attention_dim, out_dim)

    def _heads(self, t: Tensor) -> Tensor:
        """(N, attention_dim) -> (heads, N, head_dim)."""
        return t.unflatten(-1, (self.heads, self.head_dim)).transpose(0, 1)

    def _read(self, one_hot: Tensor) -> Tensor:
        """(..., heads, N) weights -> (..., out_dim): concatenated per-head values, projected."""
        values = self._heads(self.to_v(self.codebook))  # (heads, N, head_dim)
        out = torch.einsum("...hn,hnd->...hd", one_hot, values)
        return self.to_out(out.flatten(-2))

    def forward(self, x: Tensor, *, sample: bool | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """x (..., dim) -> (out (..., out_dim), indices (..., heads), logits (..., heads, N)).

        sample: Gumbel-max sampling (True) or argmax (False); None samples in training mode only.
        The straight-through gradient (Algorithm 1) flows either way.
        """
        assert x.shape[-1] == self.to_q.in_features, (
            f"last dim of x is {x.shape[-1]}, Memcodes expects {self.to_q.in_features} features"
        )
        sample = self.training if sample is None else sample
        with _float32_region(x.device):
            q = self.to_q(x.to(self.codebook.dtype)).unflatten(
                -1, (self.heads, self.head_dim)
            )  # (..., heads, head_dim)
            keys = self._heads(self.to_k(self.codebook))  # (heads, N, head_dim)
            logits = self.logits(q, keys)
            noise = gumbel_noise_like(logits) if sample else None
            one_hot, indices = straight_through_one_hot(logits, noise)
            out = self._read(one_hot)
        return out, indices, logits

    def logits(self, q: Tensor, keys: Tensor) -> Tensor:
        """q (..., heads, head_dim), keys (heads, N, head_dim) -> (..., heads, N)."""
        if self.log_temperature is None:
            return torch.einsum("...hd,hnd->...hn", q, keys) * self.scale
        q = torch.nn.functional.layer_norm(q, (self.head_dim,))
        keys = torch.nn.functional.layer_norm(keys, (self.head_dim,))
        return torch.einsum("...hd,hnd->...hn", q, keys) * (self.scale * self.log_temperature.exp())

    def decode_indices(self, indices: Tensor) -> Tensor:
        """indices (..., heads) int64 -> features (..., out_dim), identical to forward's output for them."""
        assert indices.shape[-1] == self.heads, (
            f"last dim of indices is {indices.shape[-1]}, expected one index per head ({self.heads})"
        )
        assert not indices.is_floating_point(), f"indices must be integers, got {indices.dtype}"
        with _float32_region(indices.device):
            index = indices.long().unsqueeze(-1)
            one_hot = torch.zeros(
                *indices.shape, self.codebook_size, device=indices.device, dtype=self.codebook.dtype
            )
            one_hot = one_hot.scatter_(-1, index, 1.0)  # (..., heads, N), as in forward
            return self._read(one_hot)
