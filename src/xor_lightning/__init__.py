"""xor-lightning: the chapter's XOR network as a Lightning + Hydra training project.

The core, in the order to read it (the README's table):
- `model.py`: the chapter's MLP; `module.py`: `XORModule`, the LightningModule (the loss,
  the optimizer, the chapter's four lines in `training_step`); `data.py` and
  `datamodule.py`: the points and the LightningDataModule; `train.py`: the Hydra entry
  point (`xor-train`); `intro.py`: the chapter's plain PyTorch loop, for comparison.

What a run needs around the core, at this level: `config.py` (resolvers, `run_app`),
`errors.py` (`UserError`), `validate.py` and `classes.py` (the config checks),
`checkpoint.py` (what a checkpoint holds, loading it safely), `callbacks.py` and
`tb_logger.py` (checkpoints, progress, pictures and TensorBoard during a run),
`schedule.py`, `csvdata.py`, `ddp.py`, `lock.py` and `files.py` (run-dir safety),
`pruning.py` and `trials.py` (a run as an Optuna trial).

Each other capability is a room of its own: `tools/` (evaluate, predict, export a
checkpoint; unpack a job of a fit without job dirs), `pictures/` (the boundary and
hidden-unit pictures), `sweeps/` (what a sweep leaves at its root), `stacked/` (many runs
in one fit: the vectorised launcher's engine).
The Hydra plugins in `src/hydra_plugins/` use this package; it never imports them.
"""
