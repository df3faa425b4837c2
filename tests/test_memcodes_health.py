"""Memcodes start healthy: normalised queries and keys give first logits as spread as the Gumbel noise."""

from __future__ import annotations

import math

import pytest
import torch

from nwt_train.models.dvae import DVAE, DVAEConfig
from nwt_train.models.memcodes import Memcodes

GUMBEL_STD = math.pi / math.sqrt(6)


def _memcodes(normalize: bool, logit_std: float = 1.28) -> Memcodes:
    torch.manual_seed(0)
    return Memcodes(dim=64, heads=4, codebook_size=8, codebook_dim=16, attention_dim=32, out_dim=32,
                    normalize=normalize, logit_std=logit_std)  # fmt: skip


@torch.no_grad()
def _logit_spread(module: Memcodes, x: torch.Tensor) -> float:
    _, _, logits = module(x, sample=False)
    return float(logits.std(dim=-1).mean())


def test_normalised_logits_start_near_the_gumbel_noise_whatever_the_input_scale() -> None:
    for scale in (0.01, 1.0, 100.0):
        x = scale * torch.randn(512, 64)
        spread = _logit_spread(_memcodes(True), x)
        assert 0.6 * GUMBEL_STD < spread < 1.4 * GUMBEL_STD, (scale, spread)
    # The paper's plain dot product follows the input's scale: tiny features give buried logits.
    assert _logit_spread(_memcodes(False), 0.01 * torch.randn(512, 64)) < 0.05


def test_logit_std_sets_the_initial_spread_and_the_temperature_learns() -> None:
    x = torch.randn(512, 64)
    low, high = _logit_spread(_memcodes(True, 0.5), x), _logit_spread(_memcodes(True, 2.0), x)
    assert high / low == pytest.approx(4.0, rel=1e-4)
    module = _memcodes(True)
    out, _, logits = module(x, sample=True)
    (out.square().mean() + logits.square().mean()).backward()
    assert module.log_temperature.grad is not None and module.log_temperature.grad.abs() > 0


def test_decode_indices_reads_what_forward_picked_with_normalisation() -> None:
    module = _memcodes(True).eval()
    out, indices, _ = module(torch.randn(10, 64), sample=False)
    torch.testing.assert_close(module.decode_indices(indices), out)


def test_dvae_config_switches_it_and_validates_the_scale() -> None:
    assert DVAE(DVAEConfig.tiny()).memcodes.normalize
    assert not DVAE(DVAEConfig(**{**DVAEConfig.tiny().__dict__, "memcode_norm": False})).memcodes.normalize
    with pytest.raises(ValueError, match="memcode_logit_std"):
        DVAEConfig(memcode_logit_std=0.0)
