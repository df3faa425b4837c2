"""NWT models: Memcodes, the dVAE-Adv generator and its critics."""

from nwt_train.models.critics import ConvSpec, Critic, CriticConfig, Critics, CriticSpec
from nwt_train.models.dvae import DVAE, Decoder, DVAEConfig, Encoder
from nwt_train.models.memcodes import Memcodes, gumbel_noise_like, straight_through_one_hot

__all__ = [
    "DVAE",
    "ConvSpec",
    "Critic",
    "CriticConfig",
    "CriticSpec",
    "Critics",
    "DVAEConfig",
    "Decoder",
    "Encoder",
    "Memcodes",
    "gumbel_noise_like",
    "straight_through_one_hot",
]
