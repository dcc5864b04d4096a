"""Many runs in one fit: what `hydra/launcher=vectorized` trains a sweep's jobs with.

- `net.py`: K MLPs as stacked weights (`StackedMLP`) and Adam with per-model values.
- `module.py`, `data.py`: the LightningModule and LightningDataModule around them.
- `fit.py`: which jobs can share a fit, and one fit of a group.
- `checkpoints.py`, `outputs.py`: each job's dir, as its own run would have left it.
- `resume.py`: a group continued from its jobs' own `last.ckpt` files.
- `run.py`: the launcher's work, from jobs to groups to fits to job dirs.
"""
