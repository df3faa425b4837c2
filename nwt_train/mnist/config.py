"""The study's settings, kept free of torch so that importing the command line stays fast.

`StudyConfig` is everything a `mnist-study` run depends on (validated on construction, saved with the
results); `NetConfig` sizes one model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class NetConfig:
    """Sizes of one MNIST dVAE: the Memcode layout (heads x codebook) and the network widths."""

    heads: int
    codebook_size: int
    width: int = 16
    """Channels of the first convolution; later layers use 2x and 4x."""
    query_dim: int = 256
    """Encoder output = Memcodes query size."""
    head_dim: int = 32
    """Attention width per head; Memcodes' attention_dim is heads * head_dim."""
    codebook_dim: int = 16
    """D of the codebook e (N x D)."""
    critic_hidden: int = 256
    """Width of the critic's penultimate (linear) layer."""
    classes: int = 0
    """dVAE-Class: a second critic output layer with this many digit logits (0: none)."""

    def __post_init__(self) -> None:
        positive = (
            "heads",
            "codebook_size",
            "width",
            "query_dim",
            "head_dim",
            "codebook_dim",
            "critic_hidden",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size must be >= 2, got {self.codebook_size}")
        if not isinstance(self.classes, int) or self.classes < 0:
            raise ValueError(f"classes must be an int >= 0, got {self.classes!r}")


EXPERIMENTS = ("a1-occupancy", "a1-heads", "a2-elbo", "a2-gen", "a2-class", "a2-pretrained")
# Fixed offsets added to the study seed: each experiment reproduces alone, whichever others run with it.
SEED_OFFSET = {name: i for i, name in enumerate(EXPERIMENTS)}
LOSS_KIND = {
    "a1-occupancy": "adv",
    "a1-heads": "adv",
    "a2-elbo": "elbo",
    "a2-gen": "adv",
    "a2-class": "class",
    "a2-pretrained": "pretrained",
}
# Updates per model when --steps is not given. The occupancy needs longer: at 3000 updates it reached
# 56% of the 46^2 permutations, at 6000 78% (docs/mnist-study.md); the others stay under ~10 minutes.
DEFAULT_STEPS = {"a1-occupancy": 6000, "a1-heads": 3000, "a2-elbo": 3000, "a2-gen": 3000, "a2-class": 3000,
                 "a2-pretrained": 3000}  # fmt: skip
# Settings an experiment takes when its option is not given, each chosen by a measurement on the full
# data (Hamming 1-NN / occupancy, seed 0; docs/mnist-study.md). A critic warm-up helps dVAE-Class (88.7%
# -> 91.1%) and hurts eq. 8 (66.0% -> 49.6%); relative feature matching helps eq. 8 (66.0% -> 73.3%) and
# costs a1-occupancy (78.3% -> 72.3%) and dVAE-Class (91.1% -> 90.6%).
OWN_SETTINGS: dict[str, dict[str, Any]] = {
    "a2-gen": {"feature_matching": "relative"},
    "a2-class": {"critic_warmup": 1000},
}
FALLBACK_SETTINGS: dict[str, Any] = {"feature_matching": "paper", "critic_warmup": 0}
# The scalings of `nwt_train.losses.feature_matching_loss` (FEATURE_SCALES there; that module loads torch,
# which --help must not).
FEATURE_MATCHING = ("paper", "relative")
# The paper's figures (Appendix A), in percent.
PAPER = {
    "a1-occupancy": {"occupancy_pct": 83.0},
    "a2-elbo": {"hamming_nn_accuracy_pct": 75.3},
    "a2-gen": {"hamming_nn_accuracy_pct": 76.9},
    "a2-class": {"hamming_nn_accuracy_pct": 94.7, "critic_classifier_accuracy_pct": 97.3},
    # "very similar results" to dVAE-Class with a pre-trained classifier's penultimate layer (A.2)
    "a2-pretrained": {"hamming_nn_accuracy_pct": 94.7},
}


@dataclass(frozen=True, kw_only=True)
class StudyConfig:
    """Everything a study run depends on; validated on construction and saved with the results."""

    data: str
    """Folder with the four gzipped MNIST IDX files."""
    out: str
    """Output folder: PNGs, results.md, results.json, models/."""
    experiments: tuple[str, ...] = EXPERIMENTS
    """The experiments to run (the option is repeatable)."""
    seed: int = 0
    """Study seed; experiment i uses seed + i."""
    steps: int = 0
    """Training updates per model, one critic and one generator update each as in Algorithm 2 (0: each
    experiment's own count, 6000 for a1-occupancy and 3000 for the others)."""
    batch_size: int = 64
    """Images per update."""
    train_size: int = 0
    """The first this-many training images (0: all 60,000): trained on, and the occupancy and
    nearest-neighbour database."""
    test_size: int = 0
    """The first this-many test images (0: all 10,000): queries for the A.2 accuracies."""
    lr: float = 1e-3
    """Adam learning rate, generator and critic (the paper's 1e-4 is for 150,000 steps)."""
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-7
    gamma: float = 5e-3
    """Weight of L_gan in eq. 8 (C.2.1; the same value as `nwt_train.losses.GAMMA`)."""
    gp_weight: float = 10.0
    """λ of eq. 9 (C.2.1; `nwt_train.losses.GP_WEIGHT`)."""
    feature_matching: str | None = None
    """Per-map scaling of the generator's feature matching: "paper" (eq. 7's plain L1) or "relative"
    (each map's L1 divided by the real map's mean magnitude, `nwt_train.losses.feature_matching_loss`)
    (unset: each experiment's own, relative for a2-gen and paper for the others)."""
    class_weight: float = 30.0
    """Weight of the dVAE-Class critic's digit cross entropy added to eq. 9 (the paper gives none; at 1
    the penultimate layer mostly serves the WGAN score: Hamming 1-NN 78.6% against 91.1% at 30,
    docs/mnist-study.md)."""
    critic_warmup: int | None = None
    """Critic updates (eq. 9, + the digit cross entropy for dVAE-Class) before the generator's first
    (unset: each experiment's own, 1000 for a2-class and 0 for the others)."""
    classifier_steps: int = 5000
    """a2-pretrained: updates of the digit classifier (cross entropy alone) before it is frozen."""
    kl_midpoint_fraction: float = 5000 / 150_000
    """KL annealing midpoint as a share of `steps` (C.2.1: 5,000 of 150,000); growth = 5 / midpoint."""
    width: int = 16
    """Channels of the networks' first convolution (CPU-sized; later layers use 2x and 4x)."""
    a1_heads: int = 2
    a1_codebook: int = 46
    control_heads: int = 4
    control_codebook: int = 46
    a2_heads: int = 11
    a2_codebook: int = 2
    control_queries: int = 6
    """Test digits per head in the head-control figure."""
    neighbours: int = 10
    """Nearest neighbours per query in Figure 4 (queries: the first test image of each digit)."""
    threads: int = 1
    """torch CPU threads (0: torch's default). One by default: on two cores shared with another busy
    process, two OpenMP threads spend most of their time waiting for each other (measured 10-50x slower)."""
    verify_md5: bool = True
    """Require the published MD5s of the decompressed MNIST files."""

    def __post_init__(self) -> None:
        if not self.experiments:
            raise ValueError("choose at least one experiment")
        unknown = [e for e in self.experiments if e not in EXPERIMENTS]
        if unknown:
            raise ValueError(
                f"unknown experiment(s) {', '.join(unknown)}; choose from {', '.join(EXPERIMENTS)}"
            )
        if len(set(self.experiments)) != len(self.experiments):
            raise ValueError(f"experiments are listed twice: {', '.join(self.experiments)}")
        positive = [
            "batch_size",
            "width",
            "a1_heads",
            "a1_codebook",
            "control_heads",
            "control_codebook",
            "a2_heads",
            "a2_codebook",
            "control_queries",
            "neighbours",
        ]
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("a1_codebook", "control_codebook", "a2_codebook"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be at least 2, got {getattr(self, name)}")
        for name in ("steps", "train_size", "test_size", "seed", "critic_warmup", "classifier_steps"):
            value = getattr(self, name)
            if name == "critic_warmup" and value is None:  # each experiment's own
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if not isinstance(self.threads, int) or self.threads < 0:
            raise ValueError(f"threads must be an integer >= 0, got {self.threads!r}")
        for name in ("lr", "adam_eps", "kl_midpoint_fraction"):
            if not (isinstance(getattr(self, name), float | int) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("gamma", "gp_weight", "class_weight"):
            if not (isinstance(getattr(self, name), float | int) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.feature_matching is not None and self.feature_matching not in FEATURE_MATCHING:
            raise ValueError(f"feature_matching must be paper or relative, got {self.feature_matching!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two values in [0, 1), got {self.betas!r}")
        if self.a1_heads != 2:
            # Figure 2 is a 2D map: head 1 on x, head 2 on y.
            raise ValueError(f"a1_heads must be 2 (Figure 2 maps head 1 x head 2), got {self.a1_heads}")

    def net(self, experiment: str) -> NetConfig:
        """The network sizes of one experiment's model."""
        heads, codebook = {
            "a1-occupancy": (self.a1_heads, self.a1_codebook),
            "a1-heads": (self.control_heads, self.control_codebook),
        }.get(experiment, (self.a2_heads, self.a2_codebook))
        return NetConfig(
            heads=heads,
            codebook_size=codebook,
            width=self.width,
            classes=10 if LOSS_KIND[experiment] in ("class", "pretrained") else 0,
        )

    def steps_of(self, experiment: str) -> int:
        return self.steps or DEFAULT_STEPS[experiment]

    def setting(self, experiment: str, name: str) -> Any:
        """Field `name` as given, else the experiment's own value (OWN_SETTINGS), else the fallback."""
        given = getattr(self, name)
        if given is not None:
            return given
        return OWN_SETTINGS.get(experiment, {}).get(name, FALLBACK_SETTINGS[name])

    def seed_of(self, experiment: str) -> int:
        return self.seed + SEED_OFFSET[experiment]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
