"""xor-lightning: the chapter's XOR network as a Lightning + Hydra training project.

The core, in the order to read it (the README's table):
- `model.py`: the chapter's `MLP`; `module.py`: `XORModule`, the LightningModule (the
  loss, the optimizer, `training_step`); `binary.py` and `tasks.py`: the chapter's task
  and what every task gives the module; `data.py` and `datamodule.py`: the points and
  the LightningDataModule; `train.py`: the Hydra entry point (`xor-train`); `intro.py`:
  the chapter's plain PyTorch loop, for comparison.

What a run needs around the core, at this level: `multiclass.py`, `regression.py` (the
other tasks), `deep_mlp.py`, `zoo.py` (more networks and toy data), `sampler.py`,
`csvdata.py` (batches as indices; points from CSV files), `train_metrics.py`,
`chunked.py`, `layer_rates.py`, `profiler.py` (the module's speed and options),
`config.py` (resolvers, `run_app`), `errors.py` (`UserError`), `validate.py`, `rules.py`,
`classes.py` and `targets.py` (the config check in one pass, its value rules, the class
checks; the classes a config may name),
`checkpoint.py` and `legacy.py` (what a checkpoint holds, loading it safely, old ones),
`callbacks.py` and `tb_logger.py` (checkpoints, progress, pictures and TensorBoard during
a run), `report.py`, `resume.py`, `sweep_job.py`, `schedule.py`, `ddp.py`, `lock.py` and
`files.py` (run-dir safety).

Each other capability is a room of its own: `tools/` (evaluate, predict, export a
checkpoint), `pictures/` (the boundary and hidden-unit pictures), `sweeps/` (what a sweep
leaves at its root; the seed study and the trainability map, which need the vectorised
launcher).

The Hydra plugins are packages of their own under `plugins/`; this package runs without
them (`plugins.py`: a command that names one that is not installed is refused in one line)
and imports one only inside a function that runs under it (`sweep_job.trial_pruning`).
Neither imports this package: the vectorised launchers' engine reads a run through this
package's modules by name (`plugins/xor_vectorized/src/xor_vectorized/app.py`).
"""
