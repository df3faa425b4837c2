"""Audio for the model: 24 kHz mono and the mel spectrogram of Table 7.

The alignment contract (README): a clip of N video frames at 30 FPS has exactly N * 800 audio samples
at 24 kHz and 4 * N + 1 mel frames (hop 200, centred); mel frames 4i .. 4i+3 belong to video frame i.
`nwt-train generate` imports `mel_spectrogram` from here, so training and inference share one
definition.
"""

from __future__ import annotations

import numpy as np

# The numbers are the data contract's; re-exported here for the audio code's readers.
from nwt_data.contract import (
    MEL_FRAMES_PER_VIDEO_FRAME,
    MEL_PARAMS,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    VIDEO_FPS,
    mel_frames_for,
)

__all__ = [
    "MEL_FRAMES_PER_VIDEO_FRAME",
    "MEL_PARAMS",
    "SAMPLES_PER_FRAME",
    "SAMPLE_RATE",
    "VIDEO_FPS",
    "mel_frames_for",
    "mel_spectrogram",
    "to_model_rate",
]


def mel_spectrogram(audio: np.ndarray, *, block_frames: int | None = None) -> np.ndarray:
    """Power mel spectrogram (n_mels, 1 + len // hop) of 24 kHz mono float audio, float32.

    block_frames: compute the spectrum that many mel frames at a time (the same values; memory bounded
    by the block instead of the audio's length: a whole 10-minute spectrum is ~0.9 GB).
    """
    import librosa

    params = dict(MEL_PARAMS)
    audio = np.asarray(audio, dtype=np.float32)
    basis = librosa.filters.mel(sr=params["sr"], n_fft=params["n_fft"], n_mels=params["n_mels"],
                                fmin=params["fmin"], fmax=params["fmax"])  # fmt: skip

    def project(samples: np.ndarray, center: bool) -> np.ndarray:
        spectrum = librosa.stft(samples, n_fft=params["n_fft"], hop_length=params["hop_length"],
                                win_length=params["win_length"], center=center,
                                pad_mode=params["pad_mode"])  # fmt: skip
        power = np.abs(spectrum) ** params["power"]
        # The projection in numpy's own loops, not BLAS: a BLAS product's bytes depend on how many
        # threads it runs on (a Ray worker has one, a local run several), and shards must not.
        return np.einsum("mf,ft->mt", basis, power.astype(np.float32), optimize=False).astype(np.float32)

    if block_frames is None:
        return project(audio, params["center"])
    n_fft, hop = params["n_fft"], params["hop_length"]
    # Pad once as the centred STFT does, then frame t reads padded[t * hop : t * hop + n_fft].
    padded = np.pad(audio, n_fft // 2, mode=params["pad_mode"]) if params["center"] else audio
    total = 1 + (len(padded) - n_fft) // hop
    blocks = [
        project(padded[start * hop : (min(total, start + block_frames) - 1) * hop + n_fft], False)
        for start in range(0, total, block_frames)
    ]
    return np.concatenate(blocks, axis=1)


def to_model_rate(audio: np.ndarray, rate: int, n_samples: int) -> np.ndarray:
    """Resample mono float audio to 24 kHz (soxr) and fix its length to exactly `n_samples`."""
    import librosa

    audio = np.asarray(audio, dtype=np.float32)
    if rate != SAMPLE_RATE:
        audio = librosa.resample(audio, orig_sr=rate, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    return librosa.util.fix_length(audio, size=n_samples).astype(np.float32)
