"""The optional loggers and callbacks (`logger=csv|mlflow|wandb`, `callbacks=early_stopping|rich`):
each writes or shows what it says, and one whose package is not installed is refused in one
line, before anything is written."""

import csv
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from tests.conftest import README, REPO, cli, compose_train, doc_block, load
from xor_lightning import validate
from xor_lightning.config import CONF_DIR
from xor_lightning.errors import UserError
from xor_lightning.train import train
from xor_lightning.validate import EXTRAS, installed, validate_train

# 3 epochs, a validation after each, no pictures.
QUICK = ("debug=quick", "trainer.max_epochs=3", "trainer.check_val_every_n_epoch=1",
         "callbacks.boundary_plot=null", "callbacks.hidden_units_plot=null")  # fmt: skip
PAGE = (REPO / "docs" / "configuration.md").read_text()  # where these options are told


def needs_extra(module: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        not installed(module),
        reason=f"the {module} extra is not installed (pip install -e '.[{module}]')",
    )


def test_csv_writes_val_loss_per_validation(make_cfg, tmp_path):
    train(make_cfg(*QUICK, "logger=csv"))
    rows = list(csv.DictReader((tmp_path / "csv" / "metrics.csv").open()))
    assert [float(r["val/loss"]) > 0 for r in rows if r["val/loss"]] == [True] * 3


@needs_extra("mlflow")
def test_mlflow_writes_the_run_to_its_own_database_in_the_run_dir(make_cfg, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    out, cwd = tmp_path / "run", tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    train(make_cfg(*QUICK, "logger=mlflow", out=out))
    client = MlflowClient(f"sqlite:///{out}/mlflow.db")
    experiment = client.get_experiment_by_name("xor-lightning")
    assert experiment.artifact_location == str(out / "mlartifacts")
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert len(client.get_metric_history(run.info.run_id, "val/loss")) == 3
    assert {"val/acc", "test/acc", "train/loss"} <= set(run.data.metrics)
    assert run.data.params["net/hidden"] == "8"
    assert list(cwd.iterdir()) == []  # no ./mlruns or ./mlartifacts where it was started


@pytest.mark.slow
@needs_extra("wandb")
def test_wandb_writes_an_offline_run_in_the_run_dir(tmp_path):
    assert compose_train("logger=wandb").logger.wandb.offline is True  # nothing is sent
    home = {
        "WANDB_CONFIG_DIR": str(tmp_path / "config"),
        "WANDB_CACHE_DIR": str(tmp_path / "cache"),
    }
    proc = cli("train", *QUICK, "logger=wandb", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path,
               env=home)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    [run] = (tmp_path / "run" / "wandb").glob("offline-run-*")
    [log] = run.glob("run-*.wandb")
    assert b"val/loss" in log.read_bytes()
    assert f"wandb sync {run}" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_a_missing_package_is_refused_in_one_line_with_its_extra(tmp_path):
    hide_mlflow = (
        "import runpy, sys\n"
        "sys.modules['mlflow'] = None  # as if it were not installed\n"
        "runpy.run_module('xor_lightning.train', run_name='__main__', alter_sys=True)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", hide_mlflow, "logger=mlflow"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert (
        proc.stderr == "error: logger=mlflow needs the mlflow package: pip install -e '.[mlflow]'\n"
    )
    assert proc.stdout == ""
    assert [p for p in tmp_path.rglob("*") if not p.is_dir()] == []  # nothing written
    assert list((tmp_path / "outputs" / "runs").iterdir()) == []  # and no run dir


OPTIONS = sorted(EXTRAS.values())


@pytest.mark.parametrize(("option", "module", "extra"), OPTIONS, ids=[o[0] for o in OPTIONS])
def test_each_option_needing_an_extra_is_checked(monkeypatch, tmp_path, option, module, extra):
    cfg = compose_train(f"paths.output_dir={tmp_path}", option)
    monkeypatch.setattr(validate, "installed", lambda m: m != module)
    with pytest.raises(UserError, match=re.escape(f"pip install -e '.[{extra}]'")):
        validate_train(cfg)
    monkeypatch.setattr(validate, "installed", lambda m: True)
    validate_train(cfg)


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_early_stopping_watches_the_tasks_metric_and_keeps_the_default_callbacks(make_cfg, task):
    callbacks = make_cfg("callbacks=early_stopping", f"task={task}").callbacks
    default = make_cfg(f"task={task}").callbacks
    assert set(callbacks) == {*default, "early_stopping"}
    stop = callbacks.early_stopping
    assert stop.patience == 5  # validations, as the docs say
    assert (stop.monitor, stop.mode) == (
        default.best_checkpoint.monitor,
        default.best_checkpoint.mode,
    )
    assert stop.monitor == {"binary": "val/acc", "regression": "val/loss"}[task]


def test_early_stopping_stops_a_run_that_no_longer_improves(make_cfg, tmp_path, caplog):
    # lr 1e-12: the weights barely move, so val/acc never beats its first value
    cfg = make_cfg(*QUICK, "trainer.max_epochs=20", "logger=csv", "callbacks=early_stopping",
                   "callbacks.early_stopping.patience=1", "model.optimizer.lr=1e-12")  # fmt: skip
    with caplog.at_level(logging.INFO, logger="xor_lightning.train"):
        train(cfg)
    [stop] = [m for m in caplog.messages if m.startswith("early stop")]
    assert stop == " ".join(re.search(r"`(early stop after.*?)`", PAGE, re.S)[1].split())
    rows = list(csv.DictReader((tmp_path / "csv" / "metrics.csv").open()))
    assert max(int(r["epoch"]) for r in rows if r["train/loss"]) == 1  # epochs 0 and 1 of 20
    assert load(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 2  # a batch an epoch
    assert (tmp_path / "checkpoints" / "best-epoch000.ckpt").is_file()


@pytest.mark.slow
def test_rich_shows_its_progress_bar(tmp_path):
    proc = cli("train", *QUICK, "logger=none", "callbacks=rich", f"hydra.run.dir={tmp_path}/run",
               cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"^Epoch 2/2 +━+ 1/1 ", proc.stdout, re.M), proc.stdout
    assert "Traceback" not in proc.stderr


def test_the_refusal_the_docs_show_is_the_one_given(monkeypatch, tmp_path):
    command, error = doc_block("docs/configuration.md", "A run that names one")
    cfg = compose_train(f"paths.output_dir={tmp_path}", *command.split()[2:])
    monkeypatch.setattr(validate, "installed", lambda m: False)
    with pytest.raises(UserError) as refused:
        validate_train(cfg)
    assert f"error: {refused.value}" == error


def test_the_extras_the_docs_name_exist_and_ci_installs_them():
    [install] = doc_block("docs/configuration.md", "`logger=mlflow`, `logger=wandb`")
    named = re.findall(r"'\.\[(\w+)\]'", install)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert sorted(named) == sorted(e for _, _, e in EXTRAS.values())
    assert set(named) <= set(extras) and "rich>=13" in extras["dev"]
    assert "'.[dev,mlflow,wandb]'" in (REPO / ".ci" / "run").read_text()


def test_the_readme_names_every_logger_and_callbacks_option():
    text = README.read_text()
    for group, shipped in (("logger", {"tensorboard"}), ("callbacks", {"default", "none"})):
        named = set(re.search(rf"`{group}=([\w|]+)`", text)[1].split("|"))
        assert named | shipped == {p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml")}
