"""The Optuna sweeper plugin (plugins/xor_optuna_sweeper/) searching xor-train: trials
pruned, recorded in their job.json and summarised as the template's sweeps are. The
sweeper's own tests: plugins/xor_optuna_sweeper/tests/."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tests.conftest import cli, load

# Tests of a capability around the core: `make test` runs them, `make test-fast` does not.
pytestmark = pytest.mark.slow


def study(d: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{d}/optuna.db")


def results(d: Path) -> dict:
    return yaml.safe_load((d / "optimization_results.yaml").read_text())


@pytest.mark.slow
def test_training_trials_are_pruned_recorded_and_summarised(tmp_path):
    d = tmp_path / "opt"
    proc = cli(
        "train",
        "hparams_search=xor_optuna",
        "debug=quick",
        "logger=none",
        f"hydra.sweep.dir={d}",
        "hydra.sweeper.n_trials=4",
        "hydra/sweeper/pruner=median",
        "hydra.sweeper.pruner.n_startup_trials=1",
        "model.optimizer.lr=choice(0.0001, 0.2)",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = study(d, "xor").trials
    pruned = {t.number for t in trials if t.state == TrialState.PRUNED}
    assert pruned and results(d)["n_pruned"] == len(pruned)
    for t in trials:
        job = json.loads((d / str(t.number) / "job.json").read_text())
        assert (job["status"] == "pruned") == (t.number in pruned)
        # debug=quick: 20 epochs, validation at epochs 4, 9, 14, 19; a pruned run stops there
        epoch = load(d / str(t.number) / "checkpoints" / "last.ckpt")["epoch"]
        assert epoch == (max(t.intermediate_values) + 1 if t.number in pruned else 20)
    with open(d / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {int(r["job"]) for r in rows if r["status"] == "pruned"} == pruned
    statuses = [r["status"] for r in rows]
    assert statuses == sorted(statuses, key=["ok", "pruned"].index)  # complete ones first
    assert all(r["val/acc"] for r in rows)  # a pruned run is scored at its best checkpoint
