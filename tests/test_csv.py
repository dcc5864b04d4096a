"""Your own points: `data=csv data.path=<file>`, its splits, its errors, its checkpoints."""

import logging
import re
import shutil

import pytest
import torch

from tests.conftest import cli, compose_app, compose_train, write_points
from xor_lightning.data import load_split, make_xor
from xor_lightning.datamodule import XORDataModule
from xor_lightning.errors import UserError
from xor_lightning.tools.evaluate import evaluate
from xor_lightning.tools.predict import predict
from xor_lightning.train import build, train
from xor_lightning.validate import validate_train


def csv_config(path, seed=0, **more):
    return {"problem": "csv", "path": str(path), "seed": seed, **more}


def test_splits_are_a_seeded_partition_of_the_files_points(tmp_path):
    X, y = make_xor(200, seed=0)
    path = write_points(tmp_path / "p.csv")
    splits = [load_split(csv_config(path), s) for s in ("train", "val", "test")]
    assert [len(sx) for sx, _ in splits] == [120, 40, 40]  # 20% validation, 20% test
    rows = torch.cat([torch.cat([sx, sy], 1) for sx, sy in splits])
    expected = torch.cat([X, y], 1)
    torch.testing.assert_close(rows[rows[:, 0].argsort()], expected[expected[:, 0].argsort()])
    again = load_split(csv_config(write_points(tmp_path / "bare.csv", header=False)), "val")
    assert torch.equal(again[0], splits[1][0])  # the header line is optional
    other = load_split(csv_config(path, seed=1), "val")[0]
    assert not torch.equal(other, splits[1][0])  # data.seed draws another split
    tenth = load_split(csv_config(path, val_fraction=0.1), "val")[0]
    assert len(tenth) == 20


BROKEN = [
    ("", " line 1: no points"),
    ("x1,x2,label\n", " line 2: no points"),
    ("0.1,0.2,1\n0.3,abc,0\n", " line 2: 'abc' is not a number"),
    ("0.1,0.2,1\n0.3,0.4,2\n", " line 2: label 2 is not 0 or 1 \\(task=binary\\)"),
    ("a,b,y\n0.1,0.2,1\n0.3,0.4,0.5\n", " line 3: label 0.5 is not 0 or 1"),
    ("x1,x2,label\n0.1,0.2,1\n0.3,0.4\n", " line 3: expected 3 columns \\(x1,x2,label\\), got 2"),
    ("0.1,inf,1\n", " line 1: 'inf' is not a finite number"),
    ("0.1,0.2,1\n0.2,0.1,0\n", ": 2 points are too few to split"),
]


@pytest.mark.parametrize(("content", "message"), BROKEN)
def test_a_broken_file_is_refused_before_anything_is_built(make_cfg, tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(UserError, match="^" + re.escape(str(path)) + message):
        train(make_cfg("data=csv", f"data.path={path}", out=tmp_path / "run"))
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_cli_broken_file_is_one_line_exit_2_and_no_run_dir(tmp_path):
    (tmp_path / "pts.csv").write_text("x1,x2,label\n0.1,0.2,1\n0.3,oops,0\n")
    proc = cli("train", "data=csv", "data.path=pts.csv", cwd=tmp_path)
    message = "error: pts.csv line 3: 'oops' is not a number\n"
    assert (proc.returncode, proc.stderr, proc.stdout) == (2, message, "")
    assert not (tmp_path / "outputs" / "runs").exists() or not any(
        (tmp_path / "outputs" / "runs").iterdir()
    )


def test_a_missing_file_or_path_is_refused(make_cfg, tmp_path):
    with pytest.raises(UserError, match=r"^gone\.csv: no such file \(data\.path\)$"):
        train(make_cfg("data=csv", "data.path=gone.csv"))
    with pytest.raises(UserError, match=r"^data\.path is required with data=csv"):
        train(make_cfg("data=csv"))


@pytest.mark.slow
def test_pictures_cover_the_data_wherever_it_lies(make_cfg, tmp_path):
    X, y = make_xor(200, seed=0)
    X = X * torch.tensor([2.0, 1.0]) + torch.tensor([3.0, -1.0])  # x1 in [1, 5], x2 in [-2, 0]
    rows = [f"{a},{b},{int(c)}\n" for (a, b), c in zip(X.tolist(), y.flatten(), strict=True)]
    (tmp_path / "p.csv").write_text("".join(rows))
    cfg = make_cfg("data=csv", f"data.path={tmp_path / 'p.csv'}", "debug=quick")
    trainer, module, datamodule = build(cfg)
    trainer.fit(module, datamodule=datamodule)
    [plot] = [c for c in trainer.callbacks if type(c).__name__ == "BoundaryPlot"]
    x0, x1, y0, y1 = plot.extent  # a square 1.5 times the points' width, around them
    assert (x0, x1, y0, y1) == pytest.approx((0, 6, -4, 2))


@pytest.mark.slow
def test_checkpoint_keeps_the_points_evaluate_and_predict_need_no_file(tmp_path, capsys):
    path = write_points(tmp_path / "p.csv")
    run = ("data=csv", f"data.path={path}", "debug=quick", "logger=none")
    metrics = train(compose_train(f"paths.output_dir={tmp_path}/run", *run))
    best = next((tmp_path / "run" / "checkpoints").glob("best-*.ckpt"))
    shutil.move(path, tmp_path / "moved.csv")
    scores = evaluate(compose_app("evaluate", f"ckpt_path={best}", f"paths.output_dir={tmp_path}"))
    assert scores["val/acc"] == pytest.approx(metrics["val/acc"])
    assert scores["test/acc"] == pytest.approx(metrics["test/acc"])
    write_points(path, seed=5)  # another file at the same path: the checkpoint's points win
    again = evaluate(compose_app("evaluate", f"ckpt_path={best}", f"paths.output_dir={tmp_path}"))
    assert again == pytest.approx(scores)
    other = compose_app(
        "evaluate", f"ckpt_path={best}", f"paths.output_dir={tmp_path}", "data.seed=1"
    )
    assert evaluate(other)["test/loss"] != pytest.approx(scores["test/loss"])  # another split
    predict(compose_app("predict", f"ckpt_path={best}", "points=[[0.5,-0.5]]"))
    assert capsys.readouterr().out.splitlines()[0] == "x1,x2,prob,label"
    with pytest.raises(UserError, match=r"data\.n_test do not apply to a CSV run"):
        evaluate(compose_app("evaluate", f"ckpt_path={best}", "data.n_test=10"))


def test_a_resumed_run_warns_when_its_file_changed(tmp_path, caplog):
    dm = XORDataModule(problem="csv", path=str(write_points(tmp_path / "p.csv")))
    dm.setup()
    same = dm.state_dict()
    dm.load_state_dict(same)
    assert not caplog.records
    changed = {"points": {"X": same["points"]["X"] + 1, "y": same["points"]["y"]}}
    with caplog.at_level(logging.WARNING):
        dm.load_state_dict(changed)
    assert "has changed since the checkpoint" in caplog.text
    assert torch.equal(dm.points[0], same["points"]["X"])  # it goes on with the file's points


@pytest.mark.slow
def test_a_files_own_names_and_targets_of_any_task(tmp_path, capsys):
    """Three classes under the file's own column names: trained, then predicted from a file
    with the same header, which the table keeps; a float target suits only a regression."""
    X, _ = make_xor(300, seed=4)
    label = (X[:, 0] > 0.3).long() + (X[:, 0] > -0.3).long()  # three bands of x1: 0, 1, 2
    lines = [f"{a:.5f},{b:.5f},{k}" for (a, b), k in zip(X.tolist(), label.tolist(), strict=True)]
    path = tmp_path / "bands.csv"
    path.write_text("width,height,band\n" + "\n".join(lines) + "\n")
    run = ("data=csv", f"data.path={path}", "task=multiclass", "task.num_classes=3",
           "debug=quick", "trainer.max_epochs=100", "logger=none")  # fmt: skip
    metrics = train(compose_train(f"paths.output_dir={tmp_path}/run", *run))
    assert metrics["test/acc"] > 0.8  # chance: about 1/3
    (tmp_path / "in.csv").write_text("width,height\n0.9,0.0\n-0.9,0.0\n")
    best = next((tmp_path / "run" / "checkpoints").glob("best-*.ckpt"))
    predict(compose_app("predict", f"ckpt_path={best}", f"input={tmp_path / 'in.csv'}"))
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "width,height,prob_0,prob_1,prob_2,label"
    assert [row.split(",")[-1] for row in table[1:]] == ["2", "0"]
    (tmp_path / "other.csv").write_text("x,y\n0.9,0.0\n")
    with pytest.raises(UserError, match=r"line 1: the header x,y is not the model's input"):
        predict(compose_app("predict", f"ckpt_path={best}", f"input={tmp_path / 'other.csv'}"))
    values = tmp_path / "values.csv"
    values.write_text("a,b,y\n" + "0.1,0.2,0.25\n" * 10)
    regression = compose_train(f"paths.output_dir={tmp_path}/r", "data=csv",
                               f"data.path={values}", "task=regression")  # fmt: skip
    validate_train(regression)
    with pytest.raises(UserError, match=r"values.csv line 2: label 0.25 is not 0 or 1"):
        validate_train(compose_train("data=csv", f"data.path={values}"))
