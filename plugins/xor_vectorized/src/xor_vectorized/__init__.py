"""Many runs in one fit: what `hydra/launcher=vectorized` trains a sweep's jobs with.

- `app.py`: the app whose runs are stacked (xor-train, or a renamed copy) and what the
  engine reads of it, by name: it imports no app.
- `net.py`: K of the chapter's MLPs as stacked, padded weights (`StackedMLP`), Adam and
  plain SGD with per-model (and per-layer) values; `anynet.py`: K copies of any other
  network (`StackedNet`, torch.func) and the slicing of one model's tensors out of stacked
  ones that both share.
- `module.py`, `data.py`: the LightningModule and LightningDataModule around them.
- `groups.py`: which jobs can share a fit; `fit.py`: one fit of a group.
- `checkpoints.py`, `outputs.py`, `tensorboard.py`: each job's dir, as its own run would
  have left it.
- `pruning.py`: an Optuna pruner stopping one model of a fit.
- `resume.py`: a group continued from its jobs' own `last.ckpt` files.
- `forks.py`: work shared out to forked worker processes.
- `compact.py`: a fit of thousands without a dir per job (`fits/fit<N>/`; `xor-unpack`,
  in `unpack.py`, writes a job's dir from it).
- `reruns.py`: what an earlier launch of the sweep left in a job's dir: kept, continued
  or replaced.
- `run.py`: the launcher's work, from jobs to groups to fits to job dirs.
- `interrupts.py`: Ctrl-C outside a fit, held until what is written is whole.
"""
