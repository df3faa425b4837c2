"""`python -m nwt_train.cli` (and `torchrun -m nwt_train.cli`) run the `nwt-train` app."""

from nwt_train.cli.app import main

main()
