"""`hydra/sweeper=xor_basic`: Hydra's basic sweeper, checking a big batch of jobs in one
composition per shape (`sweeper.py`, `shapes.py`)."""
