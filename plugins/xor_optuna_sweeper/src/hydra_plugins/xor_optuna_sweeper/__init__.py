"""A Hydra sweeper over current Optuna (`hydra/sweeper=xor_optuna`), see `sweeper.py`."""
