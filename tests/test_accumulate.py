"""Gradient accumulation: `accumulate` micro-batches give the gradients of one batch of their sum.

Both trainers' real step functions run in float64 on the same initial weights: accumulation 2 x
batch 1 against batch 2 alone, and under a 2-process gloo DDP (each rank 2 x 1) against one process
with batch 4. Memcodes take argmax codes and the gradient penalty fixed mixing weights, so nothing
random differs between the two ways of cutting the batch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from nwt_train import dist
from nwt_train.config import PRESETS, prior_tiny, with_overrides

RTOL = 1e-5


def _dvae_grads(batch: dict[str, torch.Tensor], *, accumulate: int, rank: int, world: int,
                preset: str = "tiny") -> dict[str, Any]:  # fmt: skip
    from nwt_train.train_dvae import build, train_step

    n = len(batch["video"])
    config = with_overrides(PRESETS[preset](), {"accumulate": accumulate, "batch_size": n})
    parts = build(config, torch.device("cpu"))
    parts["dvae"].double()
    parts["critics"].double()
    ctx = dist.Dist(rank=rank, world_size=world, local_rank=rank, device=torch.device("cpu"))
    nets = {"dvae": dist.wrap(parts["dvae"], ctx), "critics": dist.wrap(parts["critics"], ctx)}
    share = slice(rank * n // world, (rank + 1) * n // world)
    out = train_step(
        parts, nets, batch["video"][share], batch["episode"][share], config=config, step=300,
        monitor=True, sample=False, gp_eps=batch["eps"][share],
    )  # fmt: skip
    grads = {f"dvae.{k}": p.grad.clone() for k, p in parts["dvae"].named_parameters()}
    grads |= {f"critics.{k}": p.grad.clone() for k, p in parts["critics"].named_parameters()}
    return {"grads": grads, "loss": float(out["logs"]["loss/loss"])}


def _prior_grads(
    batch: dict[str, torch.Tensor], *, accumulate: int, rank: int, world: int, noise_seed: int | None = None
) -> dict[str, Any]:
    from nwt_train.models.prior import Prior
    from nwt_train.train_prior import fit_to_codes, prior_step

    n = len(batch["codes"])
    config = with_overrides(prior_tiny("far"), {"accumulate": accumulate, "batch_size": n})
    config = fit_to_codes(config, {"grid": [8, 7], "heads": 4, "codebook_size": 8, "episodes": {"a": 0}})
    torch.manual_seed(0)
    prior = Prior(config.model).double()
    optimizer = torch.optim.Adam(prior.parameters(), lr=config.lr)
    ctx = dist.Dist(rank=rank, world_size=world, local_rank=rank, device=torch.device("cpu"))
    share = slice(rank * n // world, (rank + 1) * n // world)
    # The style posterior's noise: the same N(0, 1) draws per clip however the batch is cut.
    torch.manual_seed(7 + rank if noise_seed is None else noise_seed)
    terms = prior_step(
        dist.wrap(prior, ctx), optimizer, batch["codes"][share], batch["mel"][share],
        batch["episode"][share], config=config,
    )  # fmt: skip
    grads = {k: p.grad.clone() for k, p in prior.named_parameters() if p.grad is not None}
    return {"grads": grads, "loss": float(terms["loss"])}


STEPS = {"dvae": _dvae_grads, "prior": _prior_grads}


def _batch(kind: str, n: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    if kind == "dvae":
        return {
            "video": (torch.rand(n, 8, 3, 64, 56, generator=gen, dtype=torch.float64) * 2 - 1),
            "episode": torch.arange(n) % 4,
            "eps": torch.rand(n, generator=gen, dtype=torch.float64),
        }
    return {
        "codes": torch.randint(0, 8, (n, 8, 8, 7, 4), generator=gen),
        "mel": torch.rand(n, 80, 32, generator=gen, dtype=torch.float64),
        "episode": torch.zeros(n, dtype=torch.long),
    }


def _assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got["grads"].keys() == want["grads"].keys()
    for name, grad in got["grads"].items():
        scale = float(want["grads"][name].abs().max())
        torch.testing.assert_close(
            grad, want["grads"][name], rtol=RTOL, atol=1e-9 * max(scale, 1e-3), msg=name
        )
    assert abs(got["loss"] - want["loss"]) <= RTOL * abs(want["loss"])


@pytest.mark.parametrize("preset", ["tiny", "tiny-real"])  # eq. 7's matching, and the relative one
def test_dvae_accumulation_2x1_equals_batch_2(preset: str) -> None:
    batch = _batch("dvae", 2)
    whole = _dvae_grads(batch, accumulate=1, rank=0, world=1, preset=preset)
    _assert_same(_dvae_grads(batch, accumulate=2, rank=0, world=1, preset=preset), whole)
    # and it is not vacuous: one clip alone has other gradients
    alone = _dvae_grads({k: v[:1] for k, v in batch.items()}, accumulate=1, rank=0, world=1, preset=preset)
    name = "dvae.decoder.spatial.0.weight" if "dvae.decoder.spatial.0.weight" in alone["grads"] else None
    name = name or next(iter(alone["grads"]))
    assert not torch.allclose(alone["grads"][name], whole["grads"][name], rtol=1e-3)


def test_prior_accumulation_2x1_equals_batch_2() -> None:
    batch = _batch("prior", 2)
    _assert_same(
        _prior_grads(batch, accumulate=2, rank=0, world=1), _prior_grads(batch, accumulate=1, rank=0, world=1)
    )


def _ddp_worker(rank: int, kind: str, init: str, batch: dict, out: str) -> None:
    import torch.distributed as torch_dist

    torch.set_num_threads(1)
    torch_dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        torch.save(STEPS[kind](batch, accumulate=2, rank=rank, world=2), Path(out) / f"{kind}{rank}.pt")
    finally:
        torch_dist.destroy_process_group()


def test_accumulation_under_two_process_ddp_equals_one_batch(tmp_path: Path) -> None:
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    for kind in ("dvae", "prior"):
        batch = _batch(kind, 4)
        torch.multiprocessing.spawn(
            _ddp_worker, args=(kind, f"file://{tmp_path / kind}", batch, str(tmp_path)), nprocs=2, join=True
        )
        if kind == "dvae":
            whole = _dvae_grads(batch, accumulate=1, rank=0, world=1)
            for rank in (0, 1):  # DDP averages the ranks' gradients: every rank holds the batch's
                got = torch.load(tmp_path / f"{kind}{rank}.pt")
                _assert_same({"grads": got["grads"], "loss": whole["loss"]}, whole)
        else:
            # The style noise is drawn per rank: compare with one process that draws it the same way.
            ranks = [torch.load(tmp_path / f"{kind}{rank}.pt") for rank in (0, 1)]
            for name in ranks[0]["grads"]:
                torch.testing.assert_close(
                    ranks[0]["grads"][name], ranks[1]["grads"][name], rtol=RTOL, atol=0
                )
            halves = [
                _prior_grads(
                    {k: v[2 * r : 2 * r + 2] for k, v in batch.items()}, accumulate=1, rank=0, world=1,
                    noise_seed=7 + r,
                )
                for r in (0, 1)
            ]  # fmt: skip
            for name, grad in ranks[0]["grads"].items():
                want = (halves[0]["grads"][name] + halves[1]["grads"][name]) / 2
                torch.testing.assert_close(grad, want, rtol=RTOL, atol=1e-12)
