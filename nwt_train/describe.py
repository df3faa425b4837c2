"""`nwt-train describe`: a model's parameters per part, its Memcode grid and receptive field, untrained.

The model is built on the meta device (shapes, no storage, no initialisation work), so the paper
presets describe in well under a second; the counts are those of the real modules, not a formula.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nwt_train.config import DVAETrainConfig, PriorTrainConfig

PAPER_PARAMETERS = {"far": 383_484_000, "mar": 216_327_000}
"""Trainable parameters of the paper's priors (Table 3)."""
PAPER_TABLES = {"far": "Table 5", "mar": "Table 6"}


def parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def describe_dvae(config: DVAETrainConfig) -> dict[str, Any]:
    """Parameters of the generator's parts and of each critic, the Memcode grid, the temporal reach."""
    from nwt_train.models.critics import Critics
    from nwt_train.models.dvae import DVAE

    with torch.device("meta"):
        model, critics = DVAE(config.model), Critics(config.critics)
    parts = {
        "encoder": parameters(model.encoder),
        "memcodes": parameters(model.memcodes),
        "episode_embedding": parameters(model.episode_embedding),
        "decoder": parameters(model.decoder),
        "critics": parameters(critics),
    }
    generator = parts["encoder"] + parts["memcodes"] + parts["episode_embedding"] + parts["decoder"]
    assert generator == parameters(model), "a part of the dVAE is missing from the description"
    m = config.model
    # "Same"-padded Conv3D blocks (an even kernel pads one more frame after): frames before and after
    # a Memcode's own frame that its encoder reads.
    before = sum((k[0] - 1) // 2 for k in m.temporal_kernels)
    after = sum(k[0] - 1 for k in m.temporal_kernels) - before
    return {
        "model": "dvae",
        "preset": config.preset,
        "parameters": {"total": generator + parts["critics"], "generator": generator, **parts},
        "critics": {name: parameters(critic) for name, critic in critics.items()},
        "frame_size": list(m.frame_size),
        "memcode_grid": {
            "height": m.grid_size[0],
            "width": m.grid_size[1],
            "heads": m.heads,
            "codebook_size": m.codebook_size,
            "bits": m.bits_per_memcode,
        },
        "receptive_field": {"frames": before + 1 + after, "frames_before": before, "frames_after": after},
    }


def describe_prior(config: PriorTrainConfig) -> dict[str, Any]:
    """Parameters of the prior's parts, the Memcode grid, the decoder's receptive field, Table 3."""
    from nwt_train.models.prior import Prior

    m = config.model
    with torch.device("meta"):
        model = Prior(m)
    parts = {
        "audio_encoder": parameters(model.audio),
        "style_encoder": parameters(model.style),
        "episode_embedding": parameters(model.episodes),
        "decoder": parameters(model.decoder),
    }
    total = sum(parts.values())
    assert total == parameters(model), "a part of the prior is missing from the description"
    unit = "frames" if m.arch == "far" else "Memcodes"
    return {
        "model": "prior",
        "arch": m.arch,
        "preset": config.preset,
        "parameters": {"total": total, **parts},
        "memcode_grid": {
            "height": m.grid[0],
            "width": m.grid[1],
            "heads": m.heads,
            "codebook_size": m.codebook_size,
        },
        "decoder_grid": list(m.padded_grid),
        "conditioning_grid": list(m.condition_grid),
        "receptive_field": {
            "positions": m.receptive_positions,
            "unit": unit,
            "frames": m.receptive_frames,
            "frames_exact": round(m.receptive_frames_exact, 3),
            "max_frames": m.max_receptive_frames,
            "causal_convs": m.causal_convs,
        },
        "paper": {
            "table": PAPER_TABLES[m.arch],
            "parameters": PAPER_PARAMETERS[m.arch],
            "ratio": round(total / PAPER_PARAMETERS[m.arch], 5),
        },
    }
