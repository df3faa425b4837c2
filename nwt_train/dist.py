"""All distributed glue: the same script runs on one process or under torchrun (DDP).

Model code imports nothing from here; the training loop asks `setup()` who it is, wraps each
network with `wrap()`, and reduces with `all_mean()`.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as torch_dist

from nwt_train.errors import TrainConfigError


@dataclass(frozen=True)
class Dist:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device: str = "auto") -> Dist:
    """Join the process group when torchrun started us (RANK in the environment), pick the device."""
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise TrainConfigError(f"unknown device {device!r}", "use auto, cpu, cuda or cuda:N") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise TrainConfigError(
            f"device {device!r} asked for, but torch sees no CUDA device", "use --device cpu"
        )
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if world_size > 1 and not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    return Dist(rank, world_size, local_rank, chosen)


def per_rank_batch(dist: Dist, batch_size: int, accumulate: int) -> int:
    """Each rank's share of a batch of `batch_size`; it must also split into `accumulate` micro-batches."""
    if batch_size % (dist.world_size * accumulate):
        raise TrainConfigError(
            f"batch_size {batch_size} must divide evenly over {dist.world_size} ranks x "
            f"accumulate={accumulate} micro-batches"
        )
    return batch_size // dist.world_size


def wrap(module: torch.nn.Module, dist: Dist) -> torch.nn.Module:
    """Each network is wrapped on its own; every parameter takes part in every step."""
    if not dist.enabled:
        return module
    device_ids = [dist.device.index] if dist.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    return module.module if isinstance(module, torch.nn.parallel.DistributedDataParallel) else module


def no_sync(modules: list[torch.nn.Module], enabled: bool) -> contextlib.AbstractContextManager:
    """DDP's `no_sync` on every wrapped module when `enabled`: gradient accumulation's micro-batches
    but the last accumulate locally and skip the all-reduce. The forward pass must run inside it too."""
    stack = contextlib.ExitStack()
    if enabled:
        for module in modules:
            if isinstance(module, torch.nn.parallel.DistributedDataParallel):
                stack.enter_context(module.no_sync())
    return stack


def all_mean(value: torch.Tensor, dist: Dist) -> torch.Tensor:
    """The mean of a tensor over all ranks (for logging)."""
    if not dist.enabled:
        return value
    value = value.detach().clone()
    torch_dist.all_reduce(value)
    return value / dist.world_size


def barrier(dist: Dist) -> None:
    if dist.enabled:
        torch_dist.barrier()


@contextlib.contextmanager
def running(device: str = "auto") -> Iterator[Dist]:
    """`setup()` for the length of a run; the process group is left however the run ends."""
    try:
        yield setup(device)
    finally:
        cleanup()


def cleanup() -> None:
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def precision(dist: Dist, *, tf32: bool, bf16: bool) -> contextlib.AbstractContextManager:
    """Set TF32 for matmuls and convolutions on GPU; the autocast context of a step (bf16 on GPU)."""
    if dist.device.type != "cuda":
        return contextlib.nullcontext()
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    return torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def seed_rank(dist: Dist, *, seed: int, step: int) -> None:
    """Each rank's own random stream (Gumbel and style noise) after `checkpoint.restore`.

    A fresh run seeds rank r with seed + r. A resumed single process keeps the restored RNG state
    (bitwise-exact resume). Under DDP only rank 0's state was saved, so every rank re-seeds from
    (seed, rank, step) instead of all sharing rank 0's stream.
    """
    if step == 0:
        torch.manual_seed(seed + dist.rank)
        # Unused by training, but saved in every checkpoint: seeded, two runs save the same bytes.
        random.seed(seed + dist.rank)
        np.random.seed((seed + dist.rank) % 2**32)
    elif dist.enabled:
        torch.manual_seed(seed * 1_000_003 + dist.rank * 7919 + step)
