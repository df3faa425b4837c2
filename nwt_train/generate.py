"""`nwt-train generate`: speech in, video out.

audio file -> 24 kHz mono -> mel (the same function as nwt-data) -> Memcodes sampled autoregressively
with the prior's cached incremental steps -> pixels by the dVAE -> MP4 muxed with the input audio.

Style (Section 3.5): z_l is drawn from the prior N(0, I), optionally with chosen variates fixed, or
copied from a reference clip (z_l ~ q(z_l | z_r), z_r the dVAE's Memcodes of the clip). Episode
control (3.4) picks the episode embedding by episode id.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nwt_data.audio import SAMPLE_RATE, SAMPLES_PER_FRAME, VIDEO_FPS, mel_spectrogram, to_model_rate
from nwt_train import checkpoint
from nwt_train.command_config import GenerateConfig
from nwt_train.data import MEL_PER_FRAME, read_video
from nwt_train.encode import sample_codes, weights_digest
from nwt_train.errors import DataError, RunMismatch, TrainConfigError
from nwt_train.eval_dvae import load_dvae
from nwt_train.metrics import to_uint8_frames
from nwt_train.models.dvae import DVAE, time_chunks
from nwt_train.models.prior import Prior, PriorConfig


def load_prior(run_dir: Path) -> tuple[Prior, dict[str, Any]]:
    return checkpoint.load_model(run_dir, "prior", "prior", lambda config: Prior(PriorConfig(**config)))


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """The first audio stream of any file PyAV reads, as mono float32 (channel mean) at its own rate."""
    import av

    from nwt_data.media.clip import decode_mono

    try:
        samples, rate, _ = decode_mono(path)
    except (av.FFmpegError, ValueError) as err:  # ValueError: a file without an audio stream
        raise DataError(f"cannot read audio from {path}: {err}", "pass a file with speech in it") from None
    if not len(samples):
        raise DataError(f"{path} holds no decodable audio")
    return samples, rate


def speech_features(audio: np.ndarray, rate: int, seconds: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(24 kHz samples, mel (n_mels, 4N)) for N = the audio's length in video frames, rounded up."""
    if seconds is not None:
        audio = audio[: round(seconds * rate)]
    frames = max(1, math.ceil(len(audio) * SAMPLE_RATE / rate / SAMPLES_PER_FRAME))
    samples = to_model_rate(audio, rate, frames * SAMPLES_PER_FRAME)
    # In blocks: the whole spectrum of 10 minutes would hold ~0.9 GB; the values are the same.
    mel = mel_spectrogram(samples, block_frames=4096)[:, : MEL_PER_FRAME * frames]  # 4N+1 -> the 4N read
    return samples, mel


def episode_index(episodes: dict[str, int], wanted: str) -> int:
    if wanted in episodes:
        return int(episodes[wanted])
    known = ", ".join(list(episodes)[:8]) + (" ..." if len(episodes) > 8 else "")
    raise TrainConfigError(f"unknown episode {wanted!r}; the prior knows: {known}")


@torch.no_grad()
def choose_style(
    prior: Prior, dvae: DVAE, config: GenerateConfig, generator: torch.Generator
) -> torch.Tensor:
    """z_l (1, style_dim): a prior draw, or a posterior draw for a reference clip; then fixed variates."""
    device = next(prior.parameters()).device
    dim = prior.config.style_dim
    if config.style_from is None:
        z = torch.randn(1, dim, generator=generator, device=device)
    else:
        # z_r: the reference's Memcodes, sampled as `nwt-train encode` samples a clip's.
        reference = sample_codes(dvae, read_video(config.style_from), seed=config.seed, chunk=64)
        codes = torch.from_numpy(reference)[None].long().to(device)
        mean, log_std = prior.style.posterior_params(codes)
        z = mean + log_std.exp() * torch.randn(mean.shape, generator=generator, device=device)
    for variate, value in config.style_values:
        if not 0 <= variate < dim:
            raise TrainConfigError(f"style variate {variate} is out of range: z_l has {dim} (0..{dim - 1})")
        z[0, variate] = value
    return z


def sample_logits(logits: torch.Tensor, temperature: float, generator: torch.Generator) -> torch.Tensor:
    """One index per (..., K) distribution softmax(logits / temperature)."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    flat = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
    return flat.view(probs.shape[:-1])


# Frames of conditioning and of decoded video held at a time: generation's memory does not grow with
# the length of the speech (only the audio, its mel and the Memcodes do, a few bytes per frame).
CHUNK_FRAMES = 256


def code_dtype(codebook_size: int) -> torch.dtype:
    """The narrowest integer type for Memcode indices: a long clip's codes stay small."""
    return torch.uint8 if codebook_size <= 256 else torch.int16 if codebook_size <= 32768 else torch.long


@torch.no_grad()
def sample_memcodes(
    prior: Prior,
    mel: torch.Tensor,
    episode: torch.Tensor,
    z: torch.Tensor,
    *,
    temperature: float,
    generator: torch.Generator,
    cache: bool = True,
    chunk: int = CHUNK_FRAMES,
    on_frame: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Memcodes (1, N, h, w, heads) for mel (1, n_mels, 4N), one frame (FAR) or Memcode (MAR) a step.

    cache=True runs the decoder's incremental steps with the conditioning computed `chunk` frames at a
    time (`Prior.conditioning_frames`: the same values as the whole clip's); cache=False recomputes the
    whole prefix every step (what the cache saves, for benchmarks on short clips; the results agree to
    float tolerance). Codes come back in `code_dtype`.
    """
    config = prior.config
    frames = mel.shape[-1] // MEL_PER_FRAME
    grid_h, grid_w = config.grid
    codes = torch.zeros(1, frames, grid_h, grid_w, config.heads, dtype=torch.long, device=mel.device)
    codes = codes.to(code_dtype(config.codebook_size))
    decoder = prior.decoder
    if not cache:
        cond = prior.conditioning(mel, episode, z)
        for t in range(frames):
            if config.arch == "far":
                codes[:, t] = sample_logits(decoder(codes[:, : t + 1].long(), cond[:, :, : t + 1])[:, t],
                                            temperature, generator)  # fmt: skip
            else:
                for i in range(grid_h):
                    for j in range(grid_w):
                        logits = decoder(codes[:, : t + 1].long(), cond[:, :, : t + 1])[:, t, i, j]
                        codes[:, t, i, j] = sample_logits(logits, temperature, generator)
            if on_frame is not None:
                on_frame(t + 1)
        return codes
    state = decoder.new_state()
    flat = codes.view(1, -1, config.heads)  # raster order over (T, h, w), for MAR
    per_frame = grid_h * grid_w
    for start in range(0, frames, chunk):
        stop = min(frames, start + chunk)
        conds = decoder.project_conditioning(prior.conditioning_frames(mel, episode, z, start, stop))
        for t in range(start, stop):
            if config.arch == "far":
                previous = codes[:, t - 1].long() if t else None
                logits = decoder.step(previous, conds, t - start, state)
                codes[:, t] = sample_logits(logits, temperature, generator)
            else:
                for i in range(grid_h):
                    for j in range(grid_w):
                        p = (t * grid_h + i) * grid_w + j
                        previous = flat[:, p - 1].long() if p else None
                        logits = decoder.step(previous, conds, p - start * per_frame, state)
                        codes[:, t, i, j] = sample_logits(logits, temperature, generator)
            if on_frame is not None:
                on_frame(t + 1)
    return codes


def decoded_chunks(dvae: DVAE, codes: torch.Tensor, episode: torch.Tensor,
                   chunk: int = CHUNK_FRAMES) -> Iterator[np.ndarray]:  # fmt: skip
    """Memcodes (1, N, h, w, heads) -> uint8 frames (n, H, W, 3), `chunk` frames at a time, each decoded
    with the dVAE's temporal context (the same pixels as decoding the whole clip)."""
    with torch.no_grad():
        parts = time_chunks(lambda c: dvae.decode(c.long(), episode), codes, chunk=chunk,
                            context=dvae.temporal_reach)  # fmt: skip
        for video in parts:
            yield to_uint8_frames(video[0])


def write_mp4(frames: Iterable[np.ndarray], audio: Path, out: Path, seconds: float) -> None:
    """H.264 frames at 30 FPS muxed with the input audio (AAC), trimmed to `seconds`, written atomically.

    `frames`: uint8 arrays (n, H, W, 3), streamed to ffmpeg's stdin one at a time (a whole clip as one
    array works too).
    """
    from nwt_data.media.ffmpeg import mux_frames_args, run_ffmpeg_fed

    stream = iter([frames] if isinstance(frames, np.ndarray) else frames)
    first = next(stream, None)
    if first is None or not len(first):
        raise DataError("no frames to write")
    height, width = first.shape[1:3]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{uuid.uuid4().hex[:8]}.tmp.mp4")

    def raw() -> Iterator[bytes]:
        for block in itertools.chain([first], stream):
            yield np.ascontiguousarray(block).tobytes()

    args = mux_frames_args("pipe:0", width=width, height=height, fps=VIDEO_FPS, audio=audio, out=tmp,
                           seconds=seconds)  # fmt: skip
    try:
        run_ffmpeg_fed(args, raw())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def generate(config: GenerateConfig, *, on_frame: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run the whole chain; return a summary (frames, seconds, frames per second of sampling, ...)."""
    from nwt_train.dist import setup

    device = setup(config.device).device
    prior, saved = load_prior(config.prior)
    dvae, _ = load_dvae(config.dvae)
    expected = saved["codes"]["dvae"]
    if weights_digest(dvae) != expected["weights_sha256"]:
        raise RunMismatch(
            f"{config.dvae} is not the dVAE the prior was trained with (step {expected['step']} of "
            f"{expected['run']}); pass that run to --dvae"
        )
    prior.to(device)
    dvae.to(device)
    episode = torch.tensor([episode_index(saved["codes"]["episodes"], config.episode)], device=device)
    generator = torch.Generator(device=device).manual_seed(config.seed)

    audio, rate = read_audio(config.audio)
    _, mel = speech_features(audio, rate, config.seconds)
    frames = mel.shape[-1] // MEL_PER_FRAME
    z = choose_style(prior, dvae, config, generator)
    started = time.perf_counter()
    codes = sample_memcodes(
        prior,
        torch.from_numpy(mel)[None].to(device),
        episode,
        z,
        temperature=config.temperature,
        generator=generator,
        cache=config.cache,
        on_frame=(lambda t: on_frame(t, frames)) if on_frame else None,
    )
    sampling_s = time.perf_counter() - started
    # N frames cover the audio rounded up to a frame; the MP4 is exactly N / 30 s long.
    write_mp4(decoded_chunks(dvae, codes, episode), config.audio, config.out, seconds=frames / VIDEO_FPS)
    summary = {
        "out": str(config.out),
        "arch": prior.config.arch,
        "frames": frames,
        "seconds": frames / VIDEO_FPS,
        "sampling_s": sampling_s,
        "frames_per_s": frames / sampling_s,
        "style": "reference" if config.style_from else "prior",
        "z_l": [round(v, 4) for v in z[0].tolist()],
        "episode": config.episode,
        "seed": config.seed,
        "temperature": config.temperature,
    }
    sidecar = config.out.with_suffix(".json")
    sidecar.write_text(json.dumps(summary, indent=2))
    return summary
