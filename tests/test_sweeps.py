"""Multirun sweeps: grid with a summary, HPARAMS, joblib, Optuna (resumable), submitit."""

import csv
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, cli, doc_block, hparams_tab
from xor_lightning.train import train


def sweep(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = cli("train", *args, "debug=quick", "logger=none", cwd=cwd, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def rows(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


# val/acc of `-m model.hidden=2,8 debug=quick` run one after the other in one process (the
# basic launcher): the same runs in other processes must score the same.
BASIC = {"model.hidden=2": 0.7825000286102295, "model.hidden=8": 0.9325000047683716}


def scores(sweep_dir: Path) -> dict[str, float]:
    return {r["overrides"].split()[0]: float(r["val/acc"]) for r in rows(sweep_dir)}


@pytest.mark.slow
def test_grid_summary_sorted_with_the_failed_job(tmp_path):
    d = tmp_path / "grid"
    proc = sweep("-m", "model.hidden=0,2,8", f"hydra.sweep.dir={d}", cwd=tmp_path)
    table = rows(d)
    assert [r["overrides"].split()[0] for r in table] == [
        "model.hidden=8",  # best val/acc first
        "model.hidden=2",
        "model.hidden=0",  # the failed job last, with its error
    ]
    assert [r["status"] for r in table] == ["ok", "ok", "failed"]
    assert "model.hidden=0 is not allowed" in table[2]["error"]
    for r in table[:2]:
        job = d / r["job"]
        metrics = json.loads((job / "metrics.json").read_text())
        assert float(r["val/acc"]) == pytest.approx(metrics["val/acc"])
        assert float(r["test/acc"]) == pytest.approx(metrics["test/acc"])
        assert 0 <= int(r["best_epoch"]) < 20 and float(r["wall_s"]) > 0
        assert (job / "checkpoints" / "last.ckpt").is_file()
    assert float(table[0]["val/acc"]) >= float(table[1]["val/acc"])
    md = (d / "summary.md").read_text()
    # docs/sweeps.md's example is this sweep's table: every column but the wall time
    drop_wall_s = lambda line: re.sub(r"\| [\d.]+ \| ([^|]*) \|$", r"| \1 |", line)  # noqa: E731
    shown = doc_block("docs/sweeps.md", "**Summary.**")
    assert [drop_wall_s(x) for x in md.splitlines()] == [drop_wall_s(x) for x in shown]
    assert "sweep summary" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_every_run_logs_hparams_with_its_final_metrics(make_cfg, tmp_path):
    metrics = train(make_cfg("debug=quick", out=tmp_path / "run"))
    names, values = hparams_tab(tmp_path)  # what TensorBoard's HPARAMS tab shows
    assert {"seed", "data.problem", "model.hidden", "model.optimizer", "model.optimizer.lr"} <= set(
        names
    )
    expected = {"best/acc": metrics["val/acc"], "best/loss": metrics["val/loss"],
                "test/acc": metrics["test/acc"], "test/loss": metrics["test/loss"]}  # fmt: skip
    assert values == {"run": pytest.approx(expected)}


@pytest.mark.slow
def test_joblib_runs_jobs_in_parallel_with_a_share_of_the_threads(tmp_path):
    # The default sweep dir: the workers must name the sweep's dir, not each its own.
    sweep("-m", "model.hidden=2,8", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
          cwd=tmp_path)  # fmt: skip
    [d] = (tmp_path / "outputs" / "multirun").iterdir()
    assert sorted(p.name for p in d.iterdir() if p.is_dir()) == ["0", "1"]
    jobs = [json.loads((d / str(i) / "job.json").read_text()) for i in range(2)]
    assert [j["status"] for j in jobs] == ["ok", "ok"]
    cores = os.cpu_count() or 1
    assert all(j["threads"] == max(1, cores // 2) for j in jobs)
    assert scores(d) == BASIC


@pytest.mark.slow
def test_optuna_search_records_failures_and_resumes(tmp_path):
    d = tmp_path / "opt"
    space = ["hparams_search=xor_optuna", f"hydra.sweep.dir={d}",
             "model.hidden=choice(0,4,8)"]  # fmt: skip
    sweep(*space, "hydra.sweeper.n_trials=4", cwd=tmp_path)
    results = yaml.safe_load((d / "optimization_results.yaml").read_text())
    assert results["n_trials"] == 4 and set(results["best_params"]) == {
        "model.optimizer.lr",
        "model.hidden",
        "model.activation",
    }
    best = max(float(r["val/acc"]) for r in rows(d) if r["status"] == "ok")
    assert results["best_value"] == pytest.approx(best)  # the best ok trial's, as recorded
    assert (d / "optuna.db").is_file()
    failed = [r for r in rows(d) if r["status"] == "failed"]
    assert failed and results["n_failed"] == len(failed)  # seed 1234 tries hidden=0 early
    assert all("model.hidden=0" in r["overrides"] for r in failed)
    # rerun with the same sweep dir and a larger budget: it continues, it does not restart
    proc = sweep(*space, "hydra.sweeper.n_trials=6", cwd=tmp_path)
    assert "resuming study 'xor': 4 of 6 trials done" in proc.stdout + proc.stderr
    assert sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) == list(range(6))
    table = rows(d)
    assert len(table) == 6
    assert all("model.hidden=0" in r["overrides"] for r in table if r["status"] == "failed")
    assert yaml.safe_load((d / "optimization_results.yaml").read_text())["n_trials"] == 6


@pytest.mark.slow
def test_submitit_local_launcher(tmp_path):
    d = tmp_path / "sl"
    sweep("-m", "model.hidden=2,8", "hydra/launcher=submitit_local", f"hydra.sweep.dir={d}",
          cwd=tmp_path)  # fmt: skip
    assert [r["status"] for r in rows(d)] == ["ok", "ok"]
    assert scores(d) == BASIC


def test_slurm_launcher_defaults_are_the_documented_ones(make_cfg):
    from hydra import compose, initialize_config_dir

    from xor_lightning.config import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", ["hydra/launcher=slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    text = " ".join((REPO / "docs" / "distributed.md").read_text().split())
    said = text[text.index("Its defaults:") :].split("submitit's files")[0]
    defaults = {k: yaml.safe_load(v) for k, v in re.findall(r"`(\w+): ([^`]+)`", said)}
    assert len(defaults) == 6 and all(launcher[k] == v for k, v in defaults.items()), defaults
    assert (launcher.tasks_per_node, launcher.nodes) == (1, 1)  # "one task on one node"
    assert launcher.submitit_folder.endswith("/.submitit/%j")


def test_joblib_jobs_default_to_one_per_core_each_with_its_share_of_threads():
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from xor_lightning.config import CONF_DIR
    from xor_lightning.sweep_job import limit_threads

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", ["hydra/launcher=joblib"], return_hydra_config=True)
    before, threads = HydraConfig.instance().cfg, torch.get_num_threads()
    try:
        HydraConfig.instance().set_config(cfg)
        limit_threads()  # n_jobs=-1: as many parallel jobs as cores, one thread each
        assert cfg.hydra.launcher.n_jobs == -1 and torch.get_num_threads() == 1
    finally:
        HydraConfig.instance().cfg = before
        torch.set_num_threads(threads)
