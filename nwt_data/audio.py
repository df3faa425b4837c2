"""Audio for the model: 24 kHz mono and the mel spectrogram of Table 7.

The alignment contract (README): a clip of N video frames at 30 FPS has exactly N * 800 audio samples
at 24 kHz and 4 * N + 1 mel frames (hop 200, centred); mel frames 4i .. 4i+3 belong to video frame i.
`nwt-train generate` imports `mel_spectrogram` from here, so training and inference share one
definition.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SAMPLE_RATE = 24_000
VIDEO_FPS = 30
SAMPLES_PER_FRAME = SAMPLE_RATE // VIDEO_FPS  # 800
MEL_PARAMS: dict[str, Any] = {
    "sr": SAMPLE_RATE,
    "n_mels": 80,
    "n_fft": 1024,
    "hop_length": 200,
    "win_length": 800,
    "center": True,
    "pad_mode": "constant",
    "power": 2.0,
    "fmin": 0.0,
    "fmax": 8000.0,
}
MEL_FRAMES_PER_VIDEO_FRAME = SAMPLES_PER_FRAME // MEL_PARAMS["hop_length"]  # 4


def mel_spectrogram(audio: np.ndarray) -> np.ndarray:
    """Power mel spectrogram (n_mels, 1 + len // hop) of 24 kHz mono float audio, float32."""
    import librosa

    mel = librosa.feature.melspectrogram(y=np.asarray(audio, dtype=np.float32), **MEL_PARAMS)
    return mel.astype(np.float32)


def to_model_rate(audio: np.ndarray, rate: int, n_samples: int) -> np.ndarray:
    """Resample mono float audio to 24 kHz (soxr) and fix its length to exactly `n_samples`."""
    import librosa

    audio = np.asarray(audio, dtype=np.float32)
    if rate != SAMPLE_RATE:
        audio = librosa.resample(audio, orig_sr=rate, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    return librosa.util.fix_length(audio, size=n_samples).astype(np.float32)


def mel_frames_for(n_video_frames: int) -> int:
    return MEL_FRAMES_PER_VIDEO_FRAME * n_video_frames + 1
