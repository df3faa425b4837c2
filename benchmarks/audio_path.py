"""Speech moves the face, link by link, on the synthetic talking face (issue: the audio path proven).

    python benchmarks/audio_path.py --out /tmp/audio-path            # 5 x 40 s episodes, FAR and MAR
    python benchmarks/audio_path.py --out /tmp/ap --episodes 3 --seconds 20 --dvae-steps 300

Builds the episodes and shards with the real `nwt-data demo` pipeline (the shard stage's
episode-stratified split keeps val and test clips out of training), trains the tiny
dVAE, encodes, trains the tiny FAR and MAR priors, and prints, as JSON:

    dvae        per split: r(reconstructed mouth, source mouth), r(reconstructed mouth, loudness) + null
    prior       per arch and held-out split: teacher-forced CE with the true / 1 s shifted / shuffled mel
    generation  per arch and seed: r(generated mouth, loudness of unseen speech) + the null's p99
    cpu_s       CPU seconds per stage (this process; the machine may be shared)

Every stage resumes, so a second run with more steps continues the first.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from typer.testing import CliRunner

from nwt_data.cli.app import app as data_app
from nwt_data.demo import HELD_OUT_SPEECH, make_held_out_speech
from nwt_train.audio_path import dvae_follow, generation_follow, prior_cross_entropy
from nwt_train.config import prior_tiny, tiny
from nwt_train.encode import EncodeConfig, encode_shards
from nwt_train.eval_dvae import load_dvae
from nwt_train.train_dvae import train_dvae
from nwt_train.train_prior import train_prior


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--speech", default="auto", help="auto, espeak or babble")
    parser.add_argument("--dvae-steps", type=int, default=600)
    parser.add_argument("--prior-steps", type=int, default=600)
    parser.add_argument("--archs", default="far,mar")
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()

    cpu: dict[str, float] = {}

    def timed(name: str, fn, *a, **k):
        start = time.process_time()
        value = fn(*a, **k)
        cpu[name] = round(time.process_time() - start, 1)
        return value

    ws = args.out / "ws"
    demo_args = ["demo", "-w", str(ws), "--episodes", str(args.episodes), "--seconds", str(args.seconds),
                 "--speech", args.speech]  # fmt: skip
    result = timed("data", CliRunner().invoke, data_app, demo_args)
    if result.exit_code:
        raise SystemExit(result.output)
    shards, runs = ws / "shards", args.out / "runs"
    speech = make_held_out_speech(ws / "demo-media" / f"{HELD_OUT_SPEECH.name}.wav", engine=args.speech)
    dvae_config = dataclasses.replace(tiny(), steps=args.dvae_steps, device="cpu", video_every=10**9)
    timed("dvae", train_dvae, dvae_config, shards, runs / "dvae")
    codes = args.out / "codes"
    timed("encode", encode_shards, EncodeConfig(dvae=runs / "dvae", data=shards, out=codes, device="cpu"))
    model, _ = load_dvae(runs / "dvae")
    splits = [s for s in ("train", "val", "test") if list(shards.glob(f"{s}-*.tar"))]
    report: dict = {"dvae": {s: dvae_follow(model, shards, s, max_clips=12) for s in splits}}
    report["prior"], report["generation"] = {}, {}
    for arch in args.archs.split(","):
        prior_config = dataclasses.replace(prior_tiny(arch), steps=args.prior_steps, device="cpu")
        timed(f"prior_{arch}", train_prior, prior_config, codes, runs / arch)
        held_out = [s for s in splits if s != "train"]
        report["prior"][arch] = {s: prior_cross_entropy(runs / arch, codes, s) for s in held_out}
        report["generation"][arch] = {}
        for seed in range(args.seeds):
            video = args.out / f"generated-{arch}-{seed}.mp4"
            follow = timed(f"generate_{arch}_{seed}", generation_follow, runs / arch, runs / "dvae", speech,
                           video, episode="face-1", seed=seed)  # fmt: skip
            report["generation"][arch][seed] = {k: follow[k] for k in ("r", "null_p99", "frames")} | {
                "frames_per_s": follow["generated"]["frames_per_s"]
            }
    report["cpu_s"] = cpu
    report["settings"] = vars(args) | {"out": str(args.out)}
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
