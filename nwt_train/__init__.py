"""nwt_train: train the NWT dVAE-Adv and autoregressive priors on nwt_data shards."""

__version__ = "0.1.0"
