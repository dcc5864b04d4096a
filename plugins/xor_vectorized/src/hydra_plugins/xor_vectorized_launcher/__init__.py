"""A Hydra launcher that trains a sweep's jobs as stacked models (`hydra/launcher=vectorized`)."""
