"""Image-sized dVAE-Adv parts for MNIST (Appendix A): a 28x28 image <-> one Memcode (1x1 latent).

The discretization is the shared `nwt_train.models.memcodes.Memcodes` (Algorithm 1), so the study
exercises the very layer the video dVAE trains. The convolutional parts are small stand-ins for
Table 4 sized for 28x28 inputs on a CPU: stride-2 convolutions down to 7x7, one linear layer to the
single Memcode query, and a mirrored decoder with nearest-neighbour upsampling (B.1.3) and tanh output.

Shapes:
    images   (B, 1, 28, 28) in [-1, 1]
    indices  (B, heads)              one Memcode per image
    logits   (B, heads, codebook)
    critic   (score (B,), [hidden features (B, ...)]) -- the (scores, features) convention of
             `nwt_train.losses`; the features exclude the output layer, the last one is the penultimate.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nwt_train.mnist.config import NetConfig
from nwt_train.models.memcodes import Memcodes

SIDE = 28


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2)


class MnistDVAE(nn.Module):
    """Encoder -> Memcodes (one 1x1 Memcode) -> decoder."""

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.encoder = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1),
            _act(),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1),  # 14x14
            _act(),
            nn.Conv2d(2 * w, 4 * w, 4, stride=2, padding=1),  # 7x7
            _act(),
            nn.Flatten(),
            nn.Linear(4 * w * 7 * 7, config.query_dim),  # the whole image -> one query (1x1 latent)
            # Unit-scale queries: with the default init the logits' input-dependent part is ~100x smaller
            # than the Gumbel noise, and the encoder collapses onto one code before it learns anything.
            nn.BatchNorm1d(config.query_dim, affine=False),
        )
        attention = config.heads * config.head_dim
        self.memcodes = Memcodes(
            dim=config.query_dim,
            heads=config.heads,
            codebook_size=config.codebook_size,
            codebook_dim=config.codebook_dim,
            attention_dim=attention,
            out_dim=config.query_dim,
        )
        self.decoder = nn.Sequential(
            nn.Linear(config.query_dim, 4 * w * 7 * 7),
            _act(),
            nn.Unflatten(1, (4 * w, 7, 7)),
            nn.Upsample(scale_factor=2, mode="nearest"),  # 14x14
            nn.Conv2d(4 * w, 2 * w, 3, padding=1),
            _act(),
            nn.Upsample(scale_factor=2, mode="nearest"),  # 28x28
            nn.Conv2d(2 * w, w, 3, padding=1),
            _act(),
            # Linear output, not B.1.3's tanh: MNIST's background is exactly -1, so under an L1 loss a
            # tanh output is pushed to -1 without end and saturates, and the decoder stops learning.
            nn.Conv2d(w, 1, 3, padding=1),
        )

    def encode(self, images: Tensor, *, sample: bool | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """images (B, 1, 28, 28) -> (Memcodes features (B, query_dim), indices (B, heads), logits)."""
        return self.memcodes(self.encoder(images), sample=sample)

    def decode(self, features: Tensor) -> Tensor:
        return self.decoder(features)

    def decode_indices(self, indices: Tensor) -> Tensor:
        """indices (B, heads) -> images (B, 1, 28, 28), e.g. every cell of Figure 2a."""
        return self.decode(self.memcodes.decode_indices(indices))

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """images -> (reconstruction, indices, logits); samples (Gumbel-max) in training mode only."""
        features, indices, logits = self.encode(images)
        return self.decode(features), indices, logits


class MnistCritic(nn.Module):
    """WGAN critic (no normalisation layers, as WGAN-GP asks): two stride-2 convs, a linear penultimate
    layer, a linear score. With `classes` it also has the dVAE-Class digit head on the penultimate layer.
    """

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        w = config.width
        self.hidden = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(1, w, 4, stride=2, padding=1), _act()),  # 14x14
                nn.Sequential(nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), _act()),  # 7x7
                nn.Sequential(nn.Flatten(), nn.Linear(2 * w * 7 * 7, config.critic_hidden), _act()),
            ]
        )
        self.score = nn.Linear(config.critic_hidden, 1)
        self.classifier = nn.Linear(config.critic_hidden, config.classes) if config.classes else None

    def forward(self, images: Tensor) -> tuple[Tensor, list[Tensor]]:
        """images -> (score (B,), hidden features, penultimate last)."""
        features = []
        h = images
        for layer in self.hidden:
            h = layer(h)
            features.append(h)
        return self.score(h).squeeze(1), features

    def classify(self, penultimate: Tensor) -> Tensor:
        """The second output layer of dVAE-Class: digit logits (B, classes) from the penultimate features."""
        if self.classifier is None:
            raise ValueError("this critic was built without a classifier (classes=0)")
        return self.classifier(penultimate)


@torch.no_grad()
def encode_argmax(model: MnistDVAE, images: Tensor, *, batch_size: int = 1000) -> Tensor:
    """Argmax Memcodes (n, heads) of float images (n, 1, 28, 28), in batches, the model left as it was."""
    was_training = model.training
    model.eval()
    try:
        codes = [
            model.encode(images[i : i + batch_size], sample=False)[1]
            for i in range(0, len(images), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(codes) if codes else torch.zeros(0, model.config.heads, dtype=torch.long)
