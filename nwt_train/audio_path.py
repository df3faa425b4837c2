"""Does speech move the face? Each link of the chain measured on its own, on the synthetic talking face.

    dVAE        argmax reconstructions of whole clips: does the reconstructed mouth open when the
                source mouth opens? (r between the two mouth openness series, and r with loudness)
    prior       teacher-forced cross-entropy of held-out clips with their true mel, with the mel
                shifted by 1 s, and with another clip's mel: the audio must lower it clearly
    generation  video generated from speech that was never trained on: r between the generated mouth's
                openness and the speech loudness per frame, against a circular time-shift null

The mouth measure and the null are `nwt_data.synthetic.mouth_openness` and `lip_follow`.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nwt_data.audio import SAMPLE_RATE, VIDEO_FPS, to_model_rate
from nwt_data.synthetic import MOUTH_REGION, frame_loudness, lip_follow, mouth_openness
from nwt_train.data import MEL_PER_FRAME, Dataset, read_video
from nwt_train.generate import GenerateConfig, generate, load_prior, read_audio
from nwt_train.metrics import to_uint8_frames
from nwt_train.models.dvae import DVAE, in_time_chunks
from nwt_train.train_dvae import fit_frames


def split_samples(root: Path, split: str, *, name: str = "dataset.json") -> Iterator[dict[str, Any]]:
    """Every sample of a split in shard order, members as bytes (video shards or Memcode shards)."""
    import webdataset as wds

    dataset = Dataset.open(root, name=name)
    urls = dataset.shard_urls(split)
    if not urls:
        raise ValueError(f"split {split!r} of {root} has no shards")
    for sample in wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples()):
        if sample["__key__"] not in dataset.excluded:
            yield sample


def clip_loudness(sample: dict[str, Any], frames: int) -> np.ndarray:
    """Loudness per video frame (dB under the clip's loud level) from a sample's 24 kHz audio."""
    audio = np.load(io.BytesIO(sample["audio.npy"])).astype(np.float32) / 32768
    return frame_loudness(audio, SAMPLE_RATE, frames, VIDEO_FPS)


@torch.no_grad()
def dvae_follow(dvae: DVAE, shards: Path, split: str, *, max_clips: int | None = None) -> dict[str, Any]:
    """Mouth openness of argmax reconstructions against the source's, over whole clips of `split`."""
    source_open, recon_open, loudness = [], [], []
    for count, sample in enumerate(split_samples(shards, split)):
        if max_clips is not None and count >= max_clips:
            break
        frames = read_video(sample["mp4"])
        video = fit_frames(torch.from_numpy(frames).permute(0, 3, 1, 2).float()[None] / 127.5 - 1,
                           dvae.config.frame_size)  # fmt: skip
        episode = torch.tensor([json.loads(sample["json"])["episode_index"]])
        codes = in_time_chunks(lambda v: dvae.encode(v, sample=False), video, chunk=64,
                               context=dvae.temporal_reach)  # fmt: skip
        reconstruction = in_time_chunks(lambda c, e=episode: dvae.decode(c, e), codes, chunk=64,
                                        context=dvae.temporal_reach)  # fmt: skip
        source_open.append(mouth_openness(frames))
        recon_open.append(mouth_openness(to_uint8_frames(reconstruction[0])))
        loudness.append(clip_loudness(sample, len(frames)))
    if not source_open:
        raise ValueError(f"split {split!r} of {shards} has no clips")
    source, recon, loud = (np.concatenate(x) for x in (source_open, recon_open, loudness))
    return {
        "split": split,
        "clips": len(source_open),
        "frames": len(source),
        "recon_vs_source_r": _r(recon, source),
        "source_spread": float(source.std()),
        "recon_spread": float(recon.std()),
        "source_vs_loudness": lip_follow(source, loud),
        "recon_vs_loudness": lip_follow(recon, loud),
    }


@torch.no_grad()
def prior_cross_entropy(prior_run: Path, codes_root: Path, split: str) -> dict[str, Any]:
    """Teacher-forced CE (nats per head choice) of `split` with the true, shifted and shuffled mel.

    `ce_nats` averages over the whole grid, `mouth_ce_nats` over the cells under the mouth's region
    (most cells show background and face, which no audio predicts). z_l is the style posterior's
    mean for each clip's own codes in all three cases, so only the audio differs. Shifted: the clip's
    mel rolled by 1 s. Shuffled: the next clip's mel (tiled to length).
    """
    prior, _ = load_prior(prior_run)
    clips = []
    for sample in split_samples(codes_root, split, name="codes.json"):
        meta = json.loads(sample["json"])
        codes = torch.from_numpy(np.load(io.BytesIO(sample["codes.npy"])).astype(np.int64))[None]
        mel = torch.from_numpy(np.load(io.BytesIO(sample["mel.npy"])))[None]
        frames = codes.shape[1]
        clips.append((codes, mel[..., : MEL_PER_FRAME * frames], int(meta["episode_index"])))
    if len(clips) < 2:
        raise ValueError(f"split {split!r} of {codes_root} needs at least 2 clips, has {len(clips)}")
    grid_h, grid_w = prior.config.grid
    x0, y0, x1, y1 = MOUTH_REGION
    rows = slice(math.floor(y0 * grid_h), math.ceil(y1 * grid_h))
    cols = slice(math.floor(x0 * grid_w), math.ceil(x1 * grid_w))
    totals: dict[str, list[tuple[float, int]]] = {"true": [], "shifted_1s": [], "shuffled": []}
    mouth: dict[str, list[tuple[float, int]]] = {name: [] for name in totals}
    for i, (codes, mel, episode_index) in enumerate(clips):
        other = clips[(i + 1) % len(clips)][1]
        reps = -(-mel.shape[-1] // other.shape[-1])
        variants = {
            "true": mel,
            "shifted_1s": torch.roll(mel, shifts=MEL_PER_FRAME * round(VIDEO_FPS), dims=-1),
            "shuffled": other.repeat(1, 1, reps)[..., : mel.shape[-1]],
        }
        mean, _ = prior.style.posterior_params(codes)
        episode = torch.tensor([episode_index])
        for name, variant in variants.items():
            logits, _ = prior(codes, variant, episode, z=mean)
            ce = F.cross_entropy(logits.flatten(0, -2).float(), codes.flatten(), reduction="none")
            ce = ce.view(codes.shape)  # (1, T, h, w, heads)
            totals[name].append((float(ce.sum()), ce.numel()))
            mouth[name].append((float(ce[:, :, rows, cols].sum()), ce[:, :, rows, cols].numel()))

    def mean(parts: dict[str, list[tuple[float, int]]]) -> dict[str, float]:
        return {name: sum(c for c, _ in v) / sum(n for _, n in v) for name, v in parts.items()}

    return {"split": split, "clips": len(clips), "ce_nats": mean(totals), "mouth_ce_nats": mean(mouth)}


def generation_follow(
    prior_run: Path, dvae_run: Path, speech_wav: Path, out: Path, *, episode: str, seed: int = 0,
    temperature: float = 1.0,
) -> dict[str, Any]:  # fmt: skip
    """Generate video from `speech_wav`; r of the mouth's openness with the speech loudness vs the null."""
    config = GenerateConfig(prior=prior_run, dvae=dvae_run, audio=speech_wav, out=out, episode=episode,
                            seed=seed, temperature=temperature, device="cpu")  # fmt: skip
    summary = generate(config)
    _, openness, loudness = mouth_and_loudness(out, speech_wav)
    return {"generated": summary, **lip_follow(openness, loudness)}


def mouth_and_loudness(video: Path, speech_wav: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames, mouth openness per frame, loudness of `speech_wav` per frame) of a generated video."""
    frames = read_video(video)
    audio, rate = read_audio(speech_wav)
    samples = to_model_rate(audio, rate, round(len(audio) * SAMPLE_RATE / rate))
    return frames, mouth_openness(frames), frame_loudness(samples, SAMPLE_RATE, len(frames), VIDEO_FPS)


def _r(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])
