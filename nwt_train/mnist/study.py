"""Appendix A of the NWT paper on MNIST, as library functions: train, measure, draw, tabulate.

Experiments (names as `--experiment` takes them):
    a1-occupancy  2 heads x codebook 46, 1x1 latent, dVAE-Adv loss (eq. 8): share of the 46^2 head
                  permutations that the training set's argmax Memcodes occupy (paper: 83%); Figure 2a/2b.
    a1-heads      4 heads, dVAE-Adv loss: change one head of encoded test digits and decode (Figure 3a).
    a2-elbo       11 heads x codebook 2, the ELBO of eq. 4 (Laplace likelihood -> pixel L1, KL to uniform).
    a2-gen        11 x 2, eq. 8: feature matching on all critic layers but the output, gamma*L_gan, KL.
    a2-class      11 x 2, dVAE-Class: the critic also classifies digits (cross entropy added to eq. 9) and
                  feature matching uses its penultimate layer only.
    a2-pretrained 11 x 2, A.2's remark: a digit classifier trained first and frozen; the generator matches
                  its penultimate layer (plus the KL), with no critic.
The A.2 models are scored by zero-shot nearest-neighbour classification of the test set against the
training set by Hamming distance between argmax Memcodes (eq. 10), and drawn as Figure 4.

Every model uses the shared Memcodes, losses and schedules of the video dVAE; the KL weight is the
logistic annealing of C.2.1 scaled to the run length and normalised as in β-VAE (M = heads latent
variables, N = 784 pixels).
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nwt_train import losses, schedules
from nwt_train.errors import Diverged, TrainConfigError
from nwt_train.mnist import figures
from nwt_train.mnist.config import LOSS_KIND, PAPER, StudyConfig
from nwt_train.mnist.data import load_mnist, to_tensor_range
from nwt_train.mnist.models import SIDE, MnistCritic, MnistDVAE, encode_argmax

# progress(experiment, completed, total, info)
ProgressFn = Callable[[str, int, int, str], None]


@dataclass
class Trained:
    model: MnistDVAE
    critic: MnistCritic | None
    last: dict[str, float]
    seconds: float


def prepare(config: StudyConfig) -> dict[str, torch.Tensor]:
    """Load and check MNIST, take the configured subsets: float images (n, 1, 28, 28) and labels.

    Raises `MnistDataError` (a ValueError) before anything is trained if the data are unusable.
    """
    mnist = load_mnist(config.data, verify_md5=config.verify_md5)
    train_size = config.train_size or len(mnist.train_images)
    test_size = config.test_size or len(mnist.test_images)
    if train_size > len(mnist.train_images):
        raise TrainConfigError(
            f"train_size {train_size} exceeds the {len(mnist.train_images)} training images"
        )
    if test_size > len(mnist.test_images):
        raise TrainConfigError(f"test_size {test_size} exceeds the {len(mnist.test_images)} test images")
    return {
        "train": torch.from_numpy(to_tensor_range(mnist.train_images[:train_size])),
        "train_labels": torch.from_numpy(mnist.train_labels[:train_size]),
        "test": torch.from_numpy(to_tensor_range(mnist.test_images[:test_size])),
        "test_labels": torch.from_numpy(mnist.test_labels[:test_size]),
    }


def train_model(
    experiment: str,
    config: StudyConfig,
    images: torch.Tensor,
    labels: torch.Tensor,
    progress: ProgressFn | None = None,
) -> Trained:
    """Train one experiment's dVAE (and critic) on images (n, 1, 28, 28) in [-1, 1] with digit labels."""
    kind = LOSS_KIND[experiment]
    net = config.net(experiment)
    seed = config.seed_of(experiment)
    torch.manual_seed(seed)  # weights and Gumbel noise
    batches = torch.Generator().manual_seed(seed)  # batch draws and gradient-penalty mixing
    model = MnistDVAE(net)
    critic = MnistCritic(net) if kind != "elbo" else None
    adam = {"lr": config.lr, "betas": config.betas, "eps": config.adam_eps}
    gen_opt = torch.optim.Adam(model.parameters(), **adam)
    critic_opt = torch.optim.Adam(critic.parameters(), **adam) if critic is not None else None
    steps = config.steps_of(experiment)
    midpoint = config.kl_midpoint_fraction * steps
    latent, size = schedules.latent_and_input_size((1, SIDE, SIDE), (1,), heads=net.heads)
    model.train()
    last: dict[str, float] = {}
    start = time.perf_counter()
    report_every = max(1, steps // 100)
    feature_scale = config.setting(experiment, "feature_matching")

    def critic_update(x: torch.Tensor, y: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
        """Eq. 9 (+ the digit cross entropy for dVAE-Class) on real x and a detached reconstruction."""
        assert critic is not None and critic_opt is not None
        real_out, fake_out = critic(x), critic(fake)
        penalty = losses.gradient_penalty(critic, x, fake, weight=config.gp_weight, generator=batches)
        critic_total = losses.critic_loss(real_out, fake_out) + penalty
        values = {}
        if kind == "class":
            ce = F.cross_entropy(critic.classify(real_out[1][-1]), y)
            critic_total = critic_total + config.class_weight * ce
            values["critic_ce"] = ce.item()
        critic_opt.zero_grad(set_to_none=True)
        critic_total.backward()
        critic_opt.step()
        return values | {"critic": critic_total.item()}

    def draw() -> tuple[torch.Tensor, torch.Tensor]:
        pick = torch.randint(len(images), (config.batch_size,), generator=batches)
        return images[pick], labels[pick]

    if kind == "pretrained":
        # A digit classifier trained first and then frozen; the generator never sees a critic.
        assert critic is not None and critic_opt is not None
        for _ in range(config.classifier_steps):
            x, y = draw()
            ce = F.cross_entropy(critic.classify(critic(x)[1][-1]), y)
            critic_opt.zero_grad(set_to_none=True)
            ce.backward()
            critic_opt.step()
        critic.requires_grad_(False)
        critic.eval()
    elif critic is not None:
        # Critic warm-up: the critic learns features of real digits before the codes start to settle.
        for _ in range(config.setting(experiment, "critic_warmup")):
            x, y = draw()
            with torch.no_grad():
                fake = model(x)[0]
            critic_update(x, y, fake)
    for step in range(steps):
        x, y = draw()
        reconstruction, _, logits = model(x)
        beta_norm = schedules.kl_weight(
            step, latent_size=latent, input_size=size, midpoint=midpoint, growth=5.0 / midpoint
        )
        values: dict[str, float] = {}
        if critic is None:
            # Eq. 4: the Laplace likelihood is a mean pixel L1; with the pixels as the one "feature map"
            # the shared feature-matching loss is exactly that.
            recon = losses.feature_matching_loss([[x]], [[reconstruction]])
            kl = losses.kl_to_uniform(logits)
            loss = recon + beta_norm * kl
            values |= {"recon": recon.item(), "kl": kl.item()}
        elif kind == "pretrained":
            # Feature matching on the frozen classifier's penultimate layer, plus the KL (no L_gan).
            with torch.no_grad():
                target = critic(x)[1][-1]
            recon = losses.feature_matching_loss([[target]], [[critic(reconstruction)[1][-1]]], feature_scale)
            kl = losses.kl_to_uniform(logits)
            loss = recon + beta_norm * kl
            values |= {"recon": recon.item(), "kl": kl.item()}
        else:
            values |= critic_update(x, y, reconstruction.detach())

            # Generator update, eq. 8; the critic is frozen so only the generator gets gradients.
            critic.requires_grad_(False)
            with torch.no_grad():
                _, target_features = critic(x)
            recon_scores, recon_features = critic(reconstruction)
            if kind == "class":
                # dVAE-Class matches the penultimate layer only: the digit classifier's input.
                target_features, recon_features = target_features[-1:], recon_features[-1:]
            terms = losses.dvae_generator_loss(
                [target_features],
                [recon_features],
                [recon_scores],
                logits,
                beta_norm=beta_norm,
                gamma=config.gamma,
                feature_scale=feature_scale,
            )
            critic.requires_grad_(True)
            loss = terms["loss"]
            values |= {k: terms[k].item() for k in ("recon", "gan", "kl")}
        gen_opt.zero_grad(set_to_none=True)
        loss.backward()
        gen_opt.step()
        if not math.isfinite(loss.item()):
            raise Diverged(f"{experiment}: the loss became {loss.item()} at step {step}; lower --lr")
        last = values | {"pixel_l1": (reconstruction.detach() - x).abs().mean().item()}
        if progress is not None and ((step + 1) % report_every == 0 or step + 1 == steps):
            info = " ".join(f"{k} {v:.3f}" for k, v in last.items())
            progress(experiment, step + 1, steps, info)
    model.eval()
    if critic is not None:
        critic.eval()
    return Trained(model=model, critic=critic, last=last, seconds=time.perf_counter() - start)


def occupancy(codes: torch.Tensor, codebook_size: int) -> float:
    """Share of the codebook_size^heads Memcode permutations taken by at least one of codes (n, heads)."""
    distinct = torch.unique(codes, dim=0).shape[0]
    return distinct / codebook_size ** codes.shape[1]


def hamming_nearest(
    train_codes: torch.Tensor, query_codes: torch.Tensor, *, chunk: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """1-nearest training Memcode of each query by Hamming distance (eq. 10, counted in heads).

    Tie-break: among all training images at the smallest distance, the one with the LOWEST index in the
    training set wins (deterministic and independent of the labels). Returns (train index (q,),
    distance (q,)). The search runs over the distinct training codes, each represented by its
    lowest-index image, which gives the same answer as scanning all images.
    """
    n = train_codes.shape[0]
    distinct, inverse = torch.unique(train_codes, dim=0, return_inverse=True)
    first = torch.full((distinct.shape[0],), n, dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(n), reduce="amin")
    indices, distances = [], []
    for i in range(0, query_codes.shape[0], chunk):
        d = (query_codes[i : i + chunk, None, :] != distinct[None]).sum(-1)  # (c, distinct)
        key = d * (n + 1) + first[None]  # distance first, then the lowest training index
        j = key.argmin(dim=1)
        indices.append(first[j])
        distances.append(d.gather(1, j[:, None]).squeeze(1))
    if not indices:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    return torch.cat(indices), torch.cat(distances)


def code_majority_accuracy(
    train_codes: torch.Tensor, train_labels: torch.Tensor, test_codes: torch.Tensor, test_labels: torch.Tensor
) -> float:
    """Share of test images whose exact code's most common training label (ties: the lower label) is theirs;
    a test code no training image has counts as wrong."""
    distinct, inverse = torch.unique(torch.cat([train_codes, test_codes]), dim=0, return_inverse=True)
    train_id, test_id = inverse[: len(train_codes)], inverse[len(train_codes) :]
    counts = torch.zeros(len(distinct), 10, dtype=torch.long)
    counts.index_put_((train_id, train_labels.long()), torch.ones_like(train_id), accumulate=True)
    majority = counts.argmax(1)  # the first maximum: the lower label on ties
    seen = counts.sum(1) > 0
    right = (majority[test_id] == test_labels.long()) & seen[test_id]
    return float(right.float().mean()) if len(test_codes) else 0.0


def hamming_neighbours(train_codes: torch.Tensor, query_codes: torch.Tensor, k: int) -> torch.Tensor:
    """The k nearest training images of each query (q, k), by (Hamming distance, training index)."""
    n = train_codes.shape[0]
    d = (query_codes[:, None, :] != train_codes[None]).sum(-1)
    key = d * (n + 1) + torch.arange(n)[None]
    return key.topk(min(k, n), dim=1, largest=False).indices


def first_of_each_digit(labels: torch.Tensor) -> torch.Tensor:
    """Index of the first image of every digit present, in digit order: the figures' query rows."""
    return torch.tensor([int((labels == d).nonzero()[0]) for d in range(10) if (labels == d).any()])


def _uint8(images: torch.Tensor) -> np.ndarray:
    """(..., 1, 28, 28) in [-1, 1] -> uint8 (..., 28, 28)."""
    return ((images.squeeze(-3).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


def run_a1_occupancy(config: StudyConfig, data: dict[str, torch.Tensor], trained: Trained) -> dict[str, Any]:
    out = Path(config.out)
    k = config.a1_codebook
    codes = encode_argmax(trained.model, data["train"])
    with torch.no_grad():
        grid_codes = torch.stack(torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij"), -1)
        # Rows are head 2, columns head 1 (Figure 2: head 1 on the x-axis, head 2 on the y-axis).
        grid_codes = grid_codes.flip(-1).reshape(-1, 2)
        decoded = torch.cat([trained.model.decode_indices(c) for c in grid_codes.split(512)])
    figures.save_png(
        out / "a1_occupancy_decodings.png", figures.tile(_uint8(decoded).reshape(k, k, SIDE, SIDE))
    )
    counts = np.zeros((k, k, 10), dtype=np.int64)  # [head 2, head 1, digit]
    np.add.at(counts, (codes[:, 1].numpy(), codes[:, 0].numpy(), data["train_labels"].numpy()), 1)
    figures.save_png(out / "a1_occupancy_map.png", figures.occupancy_map(counts))
    return {
        "occupancy_pct": 100 * occupancy(codes, k),
        "occupied_codes": int(torch.unique(codes, dim=0).shape[0]),
        "possible_codes": k**2,
        "train_images": len(codes),
        "figures": ["a1_occupancy_decodings.png", "a1_occupancy_map.png"],
    }


def run_a1_heads(config: StudyConfig, data: dict[str, torch.Tensor], trained: Trained) -> dict[str, Any]:
    out = Path(config.out)
    queries = first_of_each_digit(data["test_labels"])[: config.control_queries]
    x = data["test"][queries]
    codes = encode_argmax(trained.model, x)
    k, heads = config.control_codebook, config.control_heads
    blocks = []
    with torch.no_grad():
        reconstruction = trained.model.decode_indices(codes)
        for head in range(heads):
            changed = codes[:, None, :].repeat(1, k, 1)  # (queries, k, heads)
            changed[:, :, head] = torch.arange(k)
            decoded = trained.model.decode_indices(changed.reshape(-1, heads)).reshape(
                len(x), k, 1, SIDE, SIDE
            )
            rows = torch.cat([x[:, None], reconstruction[:, None], decoded], dim=1)
            blocks.append(
                (f"head {head + 1}: input, reconstruction, head {head + 1} set to 0..{k - 1}", _uint8(rows))
            )
        test_codes = encode_argmax(trained.model, data["test"])
        test_l1 = float(
            torch.cat(
                [
                    (trained.model.decode_indices(c) - t).abs().mean((1, 2, 3))
                    for c, t in zip(test_codes.split(1000), data["test"].split(1000), strict=True)
                ]
            ).mean()
        )
    figures.save_png(out / "a1_heads_control.png", figures.labelled_blocks(blocks))
    train_codes = encode_argmax(trained.model, data["train"])
    return {
        "test_pixel_l1": test_l1,
        "codes_used_per_head": [int(torch.unique(train_codes[:, h]).numel()) for h in range(heads)],
        "distinct_train_codes": int(torch.unique(train_codes, dim=0).shape[0]),
        "figures": ["a1_heads_control.png"],
    }


def run_a2(
    experiment: str, config: StudyConfig, data: dict[str, torch.Tensor], trained: Trained
) -> dict[str, Any]:
    out = Path(config.out)
    train_codes = encode_argmax(trained.model, data["train"])
    test_codes = encode_argmax(trained.model, data["test"])
    nearest, distance = hamming_nearest(train_codes, test_codes)
    predicted = data["train_labels"][nearest]
    result: dict[str, Any] = {
        "hamming_nn_accuracy_pct": 100 * float((predicted == data["test_labels"]).float().mean()),
        "exact_code_match_pct": 100 * float((distance == 0).float().mean()),
        "mean_nn_distance_heads": float(distance.float().mean()),
        "distinct_train_codes": int(torch.unique(train_codes, dim=0).shape[0]),
        "possible_codes": config.a2_codebook**config.a2_heads,
        # Not the paper's metric: each code votes its training images' most common digit. It bounds what
        # a different tie-break could reach and shows how pure the codes are.
        "code_majority_accuracy_pct": 100
        * code_majority_accuracy(train_codes, data["train_labels"], test_codes, data["test_labels"]),
    }
    if trained.critic is not None and trained.critic.classifier is not None:
        with torch.no_grad():
            logits = torch.cat(
                [trained.critic.classify(trained.critic(t)[1][-1]) for t in data["test"].split(1000)]
            )
        result["critic_classifier_accuracy_pct"] = 100 * float(
            (logits.argmax(1) == data["test_labels"]).float().mean()
        )
    queries = first_of_each_digit(data["test_labels"])
    neighbours = hamming_neighbours(train_codes, test_codes[queries], config.neighbours)
    name = f"{experiment.replace('-', '_')}_neighbours.png"
    figures.save_png(
        out / name,
        figures.neighbours(
            _uint8(data["test"][queries]),
            _uint8(data["train"][neighbours]),
            data["train_labels"][neighbours].numpy() == data["test_labels"][queries].numpy()[:, None],
        ),
    )
    result["figures"] = [name]
    return result


def run_study(
    config: StudyConfig, progress: ProgressFn | None = None, data: dict[str, torch.Tensor] | None = None
) -> dict[str, Any]:
    """Run the chosen experiments; write PNGs, models/, results.json and results.md under config.out.

    data: what `prepare(config)` returns (loaded here when not given).
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    if data is None:
        data = prepare(config)
    out = Path(config.out)
    (out / "models").mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for experiment in config.experiments:
        start = time.perf_counter()
        trained = train_model(experiment, config, data["train"], data["train_labels"], progress)
        if progress is not None:
            steps = config.steps_of(experiment)
            progress(experiment, steps, steps, "evaluating")
        if experiment == "a1-occupancy":
            result = run_a1_occupancy(config, data, trained)
        elif experiment == "a1-heads":
            result = run_a1_heads(config, data, trained)
        else:
            result = run_a2(experiment, config, data, trained)
        torch.save(
            {
                "model": trained.model.state_dict(),
                "critic": None if trained.critic is None else trained.critic.state_dict(),
                "net": dataclasses.asdict(config.net(experiment)),
                "config": config.to_json(),
            },
            out / "models" / f"{experiment}.pt",
        )
        results[experiment] = result | {
            "seed": config.seed_of(experiment),
            "steps": config.steps_of(experiment),
            "critic_warmup": config.setting(experiment, "critic_warmup"),
            "feature_matching": config.setting(experiment, "feature_matching"),
            "loss": LOSS_KIND[experiment],
            "heads": config.net(experiment).heads,
            "codebook": config.net(experiment).codebook_size,
            "train_seconds": trained.seconds,
            "total_seconds": time.perf_counter() - start,
            "last_train_losses": trained.last,
        }
    report = {
        "config": config.to_json(),
        "seeds": {e: config.seed_of(e) for e in config.experiments},
        "train_images": len(data["train"]),
        "test_images": len(data["test"]),
        "tie_break": "1-NN by Hamming distance; ties go to the lowest training-set index",
        "environment": {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
        "paper": {e: PAPER[e] for e in config.experiments if e in PAPER},
        "results": results,
    }
    (out / "results.json").write_text(json.dumps(report, indent=2))
    (out / "results.md").write_text(results_markdown(report))
    return report


METRIC_NAMES = {
    "occupancy_pct": "occupancy of the 46^2 permutations (%)",
    "hamming_nn_accuracy_pct": "zero-shot Hamming 1-NN test accuracy (%)",
    "critic_classifier_accuracy_pct": "critic classifier test accuracy (%)",
    "test_pixel_l1": "test pixel L1 (argmax codes, [-1, 1] scale)",
}


def result_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(experiment, metric, ours, paper) for every headline number of the report."""
    rows = []
    for experiment, result in report["results"].items():
        paper = report["paper"].get(experiment, {})
        for key, name in METRIC_NAMES.items():
            if key in result:
                if key == "occupancy_pct":
                    name = name.replace("46^2", f"{result['codebook']}^2")
                ours = f"{result[key]:.1f}" if key.endswith("_pct") else f"{result[key]:.4f}"
                rows.append((experiment, name, ours, f"{paper[key]:.1f}" if key in paper else "-"))
    return rows


def results_markdown(report: dict[str, Any]) -> str:
    config = report["config"]
    lines = [
        "# NWT Appendix A on MNIST: results",
        "",
        f"Batch {config['batch_size']}, lr {config['lr']}, "
        f"{report['train_images']} training / {report['test_images']} test images, seed {config['seed']} "
        f"(per experiment: {', '.join(f'{e} {s}' for e, s in report['seeds'].items())}).",
        f"Tie-break: {report['tie_break']}.",
        "",
        "| experiment | metric | ours | paper |",
        "|---|---|---:|---:|",
    ]
    lines += [f"| {e} | {m} | {o} | {p} |" for e, m, o, p in result_rows(report)]
    lines += [
        "",
        "| experiment | heads x codebook | loss | feature matching | critic warm-up | steps | train time (s) "
        "| figures |",
        "|---|---|---|---|---:|---:|---:|---|",
    ]
    for experiment, result in report["results"].items():
        links = ", ".join(f"[{f}]({f})" for f in result["figures"])
        lines.append(
            f"| {experiment} | {result['heads']} x {result['codebook']} | {result['loss']} | "
            f"{result['feature_matching']} | {result['critic_warmup']} | "
            f"{result['steps']} | {result['train_seconds']:.0f} | {links} |"
        )
    return "\n".join(lines) + "\n"
