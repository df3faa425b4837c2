"""`nwt-train dvae`: a tiny run learns, resumes exactly, and DDP matches one process."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from nwt_train import checkpoint
from nwt_train.checkpoint import RunMismatch
from nwt_train.cli.app import app
from nwt_train.config import tiny, with_overrides
from nwt_train.data import Dataset, clip_windows
from nwt_train.train_dvae import train_dvae


def _config(**overrides):  # type: ignore[no-untyped-def]
    return with_overrides(tiny(), {"log_every": 5, "video_every": 10, "checkpoint_every": 5, **overrides})


def test_loader_resumes_its_exact_stream(shards: Path) -> None:
    dataset = Dataset.open(shards)
    full = [(w["key"], w["start"]) for w in clip_windows(dataset, frames=8, samples_per_worker=10, seed=4)]
    rest = clip_windows(dataset, frames=8, samples_per_worker=6, seed=4, resume=(2, 2))
    assert [(w["key"], w["start"]) for w in rest] == full[4:]


def test_tiny_run_learns_logs_and_saves(shards: Path, tmp_path: Path) -> None:
    seen = []
    last = train_dvae(
        _config(steps=40, lr=1e-3), shards, tmp_path / "run", progress=lambda s, v: seen.append(v)
    )
    first, final = seen[0]["recon/pixel_l1"], last["recon/pixel_l1"]
    assert final < 0.7 * first, (first, final)  # the reconstruction error falls clearly
    assert {"critic/gradient_penalty", "critic/real_score", "critic/fake_score", "schedule/beta_norm",
            "memcodes/argmax_perplexity_head0", "memcodes/sampled_perplexity_head3",
            "memcodes/max_prob_head1", "memcodes/kl_head2", "memcodes/agreement_mean",
            "memcodes/argmax_same_as_previous_frame",
            "grad/gan_over_recon", "critic/conv3d/grad_norm", "critic/conv2d_b/penalty_input_grad_norm",
            "speed/clips_per_s"} <= set(last)  # fmt: skip
    assert 1 <= last["memcodes/argmax_perplexity_head0"] <= 8 and 0 < last["memcodes/agreement_mean"] <= 1
    assert last["grad/gan_over_recon"] > 0 and last["critic/conv3d/grad_norm"] > 0
    events = list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 1000
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent), size_guidance={"images": 0})
    acc.Reload()
    assert "reconstruction" in acc.Tags()["images"] and "loss/recon" in acc.Tags()["scalars"]
    saved = checkpoint.load(tmp_path / "run")
    assert saved["step"] == 40 and {"dvae", "critics", "gen_opt", "critic_opt", "rng"} <= set(saved)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["preset"] == "tiny"


def test_resume_gives_the_same_weights(shards: Path, tmp_path: Path) -> None:
    config = _config(steps=20)
    train_dvae(config, shards, tmp_path / "straight")
    train_dvae(dataclasses.replace(config, steps=10), shards, tmp_path / "resumed")  # stopped at 10...
    train_dvae(config, shards, tmp_path / "resumed")  # ...and resumed to 20
    straight = checkpoint.load(tmp_path / "straight")
    resumed = checkpoint.load(tmp_path / "resumed")
    assert straight["step"] == resumed["step"] == 20
    for name in ("dvae", "critics"):
        for key, value in straight[name].items():
            assert torch.equal(value, resumed[name][key]), (name, key)
    with pytest.raises(RunMismatch, match="other settings"):
        train_dvae(dataclasses.replace(config, lr=5e-4), shards, tmp_path / "resumed")


def test_cli_runs_and_reports(shards: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "dvae",
            "--data",
            str(shards),
            "--out",
            str(tmp_path / "cli"),
            "--preset",
            "tiny",
            "--set",
            "steps=5",
            "--set",
            "log_every=5",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "loss/recon" in result.output
    bad = CliRunner().invoke(
        app, ["dvae", "--data", str(tmp_path), "--out", str(tmp_path / "x"), "--preset", "tiny"]
    )
    assert bad.exit_code == 2 and "no dataset.json" in bad.output
    unknown = CliRunner().invoke(
        app, ["dvae", "--data", str(shards), "--out", str(tmp_path / "y"), "--set", "nope=1"]
    )
    assert unknown.exit_code == 2 and "unknown config key 'nope'" in unknown.output


def _ddp_worker(rank: int, init: str, batch: dict, result_dir: str) -> None:
    import torch.distributed as torch_dist

    from nwt_train import dist, losses
    from nwt_train.models.critics import CriticConfig, Critics
    from nwt_train.models.dvae import DVAE, DVAEConfig

    torch_dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    grads = _generator_grads(DVAE, Critics, DVAEConfig, CriticConfig, dist, losses, batch, rank=rank, world=2)
    torch.save(grads, Path(result_dir) / f"rank{rank}.pt")
    torch_dist.destroy_process_group()


def _generator_grads(
    dvae_cls,
    critics_cls,
    config_cls,
    critics_config_cls,
    dist,
    losses,
    batch,
    *,
    rank: int,  # type: ignore[no-untyped-def]
    world: int,
):
    """Gradients of the generator loss for this rank's share of `batch`, through DDP when world > 1."""
    torch.manual_seed(0)
    config = config_cls.tiny()
    model, critics = dvae_cls(config), critics_cls(critics_config_cls.tiny())
    ctx = dist.Dist(rank=rank, world_size=world, local_rank=rank, device=torch.device("cpu"))
    wrapped = dist.wrap(model, ctx)
    share = slice(rank * len(batch["video"]) // world, (rank + 1) * len(batch["video"]) // world)
    video, episode = batch["video"][share], batch["episode"][share]
    reconstruction, _, logits = wrapped(video, episode, sample=False)
    _, real = losses.split_critic_outputs(list(critics(video).values()))
    scores, fake = losses.split_critic_outputs(list(critics(reconstruction).values()))
    terms = losses.dvae_generator_loss(real, fake, scores, logits, beta_norm=0.01, gamma=5e-3)
    terms["loss"].backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_two_process_ddp_gradients_match_one_process(tmp_path: Path) -> None:
    from nwt_train import dist, losses
    from nwt_train.models.critics import CriticConfig, Critics
    from nwt_train.models.dvae import DVAE, DVAEConfig

    generator = torch.Generator().manual_seed(1)
    config = DVAEConfig.tiny()
    batch = {
        "video": torch.rand(4, 8, 3, *config.frame_size, generator=generator) * 2 - 1,
        "episode": torch.tensor([0, 1, 2, 3]),
    }
    single = _generator_grads(DVAE, Critics, DVAEConfig, CriticConfig, dist, losses, batch, rank=0, world=1)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    torch.multiprocessing.spawn(
        _ddp_worker, args=(f"file://{tmp_path / 'rendezvous'}", batch, str(tmp_path)), nprocs=2, join=True
    )
    for rank in (0, 1):
        grads = torch.load(tmp_path / f"rank{rank}.pt")
        assert grads.keys() == single.keys()
        for name, grad in grads.items():
            torch.testing.assert_close(grad, single[name], rtol=1e-4, atol=1e-6, msg=name)


def test_eval_dvae_scores_whole_clips_beside_baselines(shards: Path, tmp_path: Path) -> None:
    import io

    import av
    import webdataset as wds

    from nwt_train.eval_dvae import frame_psnr, frame_ssim, grid_baseline, h264_within, memcode_bits

    train_dvae(_config(steps=5), shards, tmp_path / "run")
    result = CliRunner().invoke(
        app,
        [
            "eval-dvae",
            "--run",
            str(tmp_path / "run"),
            "--data",
            str(shards),
            "--split",
            "train",
            "--chunk",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        "RLE size" in result.output and "grid + bilinear" in result.output and "bits/frame" in result.output
    )
    report = json.loads((tmp_path / "run" / "eval-train.json").read_text())
    # Every frame of every train clip, counted independently of nwt_train.
    want = {}
    for sample in wds.WebDataset(Dataset.open(shards).shard_urls("train"), shardshuffle=False):
        with av.open(io.BytesIO(sample["mp4"])) as container:
            want[sample["__key__"]] = sum(1 for _ in container.decode(video=0))
    assert {c["key"]: c["frames"] for c in report["per_clip"]} == want
    assert report["frames"] == sum(want.values()) and report["chunk"] == 4 and report["context"] == 2
    methods = report["methods"]
    assert set(methods) == {"h264_crf23", "memcodes", "memcodes_rle", "h264_rle_size", "grid", "uncompressed"}
    for name, row in methods.items():
        assert row["bits_per_frame"] == pytest.approx(8 * row["bytes"] / report["frames"]), name
        if name != "uncompressed":
            assert 0 < row["frame_ssim"] < 1 and 5 < row["frame_psnr_db"] < 60, name
    assert methods["memcodes_rle"]["frame_psnr_db"] == methods["memcodes"]["frame_psnr_db"]
    assert methods["h264_crf23"]["compression_vs_h264_crf23"] == 1.0
    for clip in report["per_clip"]:  # h264 fits the RLE budget unless even crf 51 cannot
        assert clip["h264_rle_size_bits"] <= clip["memcodes_rle_bits"] or clip["h264_rle_size_crf"] == 51
    assert all(0 < u <= 1 for u in report["codebook_usage_per_head"])
    # The pieces on known inputs.
    frames = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.allclose(frame_ssim(frames, frames), torch.ones(2))
    assert (frame_psnr(frames, frames) > 90).all()
    noisy = (frames + 0.1 * torch.randn_like(frames)).clamp(-1, 1)
    assert (frame_ssim(frames, noisy) < 0.99).all() and (frame_psnr(frames, noisy) < 30).all()
    flat = torch.full((3, 3, 16, 16), 0.25)  # a flat frame survives the grid exactly
    assert torch.allclose(grid_baseline(flat, (2, 2)), flat)
    still = torch.zeros(10, 2, 2, 3, dtype=torch.long)  # no head ever changes: one run per stream
    assert memcode_bits(still, 8) == (10 * 12 * 3, 12 * (3 + 4))
    moving = (torch.rand(12, 32, 32, 3) * 255).to(torch.uint8).numpy()
    crf, size, decoded = h264_within(moving, 4000)
    assert size <= 4000 and decoded.shape == moving.shape and crf > 23
    missing = CliRunner().invoke(app, ["eval-dvae", "--run", str(tmp_path / "none"), "--data", str(shards)])
    assert missing.exit_code == 2 and "no checkpoint" in missing.output


def test_sigterm_saves_before_exit_and_the_run_resumes(shards: Path, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    argv = [sys.executable, "-m", "nwt_train.cli", "dvae", "--data", str(shards), "--out", str(run),
            "--preset", "tiny", "--set", "steps=400", "--set", "checkpoint_every=1000"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while not list((run / "tensorboard").glob("events*")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # some steps in
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out.decode(errors="replace")[-2000:]
    stopped = checkpoint.load(run)["step"]
    assert 0 < stopped < 400  # saved where it was, well before the end
    train_dvae(_config(steps=stopped + 2, checkpoint_every=1000), shards, run)
    assert checkpoint.load(run)["step"] == stopped + 2
