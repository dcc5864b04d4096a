"""A Hydra launcher that trains a sweep's jobs stacked, K a SLURM array task
(`hydra/launcher=vectorized_slurm`)."""
