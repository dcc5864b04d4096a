"""TensorBoard as a learner reads it: a sub-run per stage, HPARAMS read by TensorBoard itself."""

import json

import pytest
from omegaconf import OmegaConf

from tests.conftest import cli, compose_train, curves, hparams_tab, write_points
from xor_lightning.tb_logger import StageLogger, session_hparams


def test_stage_logger_outside_a_trainer(tmp_path):
    logger = StageLogger(str(tmp_path / "job"))
    for step in range(3):
        logger.log_metrics({"train/loss": 1.0 / (step + 1), "epoch": step}, step=step)
    logger.log_metrics({"val/acc": 0.75, "epoch": 2}, step=2)
    logger.finalize("success")
    assert curves(tmp_path / "job") == {
        "train": {"loss": [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]},
        "val": {"acc": [(2, 0.75)]},
    }
    assert logger.epoch_step == {0: 0, 1: 1, 2: 2}


def test_session_hparams_put_the_runs_own_overrides_first(tmp_path):
    overrides = ["model.hidden=4", "data=circle", "+trainer.deterministic=true",
                 "model.optimizer._target_=torch.optim.SGD", "hydra.run.dir=x"]  # fmt: skip
    cfg = compose_train(f"paths.output_dir={tmp_path}", *overrides[:-1], "~model.optimizer.fused")
    params, swept = session_hparams(cfg, overrides)
    assert swept == ["model.hidden", "data", "trainer.deterministic", "model.optimizer"]
    assert list(params)[:4] == swept
    assert (params["model.hidden"], params["data"], params["trainer.deterministic"]) == (
        4,
        "circle",
        True,
    )
    assert params["model.optimizer"] == "SGD" and params["data.batch_size"] == "full"
    assert params["data.problem"] == "circle" and "data.path" not in params


@pytest.mark.slow
def test_hparams_across_a_sweep_on_a_csv_lists_the_swept_keys_first(tmp_path):
    points = write_points(tmp_path / "points.csv")
    d = tmp_path / "sweep"
    proc = cli("train", "-m", "data=csv", f"data.path={points}", "model.hidden=2,8",
               "debug=quick", f"hydra.sweep.dir={d}", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    names, values = hparams_tab(d)
    assert names[:4] == ["data", "data.path", "debug", "model.hidden"]  # the job's overrides
    assert set(values) == {"0", "1"}
    for job, session in values.items():
        metrics = json.loads((d / job / "metrics.json").read_text())
        keys = {"best/acc": "val/acc", "best/loss": "val/loss", "test/acc": "test/acc",
                "test/loss": "test/loss"}  # fmt: skip
        assert session == pytest.approx({k: metrics[m] for k, m in keys.items()})
        cfg = OmegaConf.load(d / job / ".hydra" / "config.yaml")
        assert cfg.data.path == str(points) and (d / job / "hidden_units.png").is_file()
