"""docs/template.md, performed: a copy of the project, renamed, with a network and data of
its own (tests/template_example: not the MLP, not the XOR data), then every feature the
guide lists, run as a copier runs it (`python -m my_project.<entry point>`)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import torch

from tests.conftest import hparams_tab, load, wait_for
from tests.template_example.two_layer import TwoLayerNet
from tests.template_example.waves import waves

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = Path(__file__).parent / "template_example"
PACKAGE = "my_project"
OWN = ("model=two_layer", "data=waves")
SHORT = ("trainer.max_epochs=30", "trainer.check_val_every_n_epoch=5",
         "callbacks.last_checkpoint.every_n_epochs=5")  # fmt: skip


def copy_and_rename(dest: Path) -> None:
    """Steps 1 and 2 of the guide: copy src/, conf/ and pyproject.toml; rename the package
    (its directory, and the name wherever src/, conf/ and pyproject.toml say it)."""
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for part in ("src", "conf"):
        shutil.copytree(REPO / part, dest / part, ignore=skip)
    shutil.copy(REPO / "pyproject.toml", dest)
    (dest / "src" / "xor_lightning").rename(dest / "src" / PACKAGE)
    files = [*dest.glob("src/**/*.py"), *dest.glob("conf/**/*.yaml"), dest / "pyproject.toml"]
    for path in files:
        text = path.read_text()
        if "xor_lightning" in text:
            path.write_text(text.replace("xor_lightning", PACKAGE))


def add_own(dest: Path) -> None:
    """Steps 3 to 6: the networks, datamodules and LightningModule in the package, a YAML
    for each (tests/template_example: probe.py is the tests' own callbacks)."""
    for path in EXAMPLE.glob("*.py"):
        if path.name != "__init__.py":
            shutil.copy(path, dest / "src" / PACKAGE / path.name)
    for path in (EXAMPLE / "conf").rglob("*.yaml"):  # with a search of the network's keys
        shutil.copy(path, dest / "conf" / path.relative_to(EXAMPLE / "conf"))


def new_project(factory: pytest.TempPathFactory) -> Path:
    """A copier's project: copied, renamed, with the network and data of its own."""
    dest = factory.mktemp("copy")
    copy_and_rename(dest)
    add_own(dest)
    return dest


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return new_project(tmp_path_factory)


def env(project: Path) -> dict[str, str]:
    """The copy's package first on the path (a copier would `pip install -e .` it)."""
    keep = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    path = [str(project / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    return keep | {"PYTHONPATH": os.pathsep.join(path)}


def run(project: Path, module: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", f"{PACKAGE}.{module}", *args]
    return subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=timeout,
                          env=env(project))  # fmt: skip


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def trained(project: Path) -> Path:
    """Step 5: train the copier's network on the copier's data (width1 overridden)."""
    ok(run(project, "train", *OWN, *SHORT, "model.width1=12", "hydra.run.dir=runs/first"))
    return project / "runs" / "first"


def net_of(ckpt: dict) -> TwoLayerNet:
    """The trained network, built here from the checkpoint's weights (an independent way)."""
    net = TwoLayerNet(**{k: v for k, v in ckpt["hyper_parameters"]["net"].items() if k[0] != "_"})
    net.load_state_dict({k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")})
    return net.eval()


def test_the_rename_leaves_no_old_name_and_the_scripts_point_at_the_package(project):
    files = [*project.glob("src/**/*"), *project.glob("conf/**/*"), project / "pyproject.toml"]
    left = [p for p in files if p.is_file() and b"xor_lightning" in p.read_bytes()]
    assert left == []
    scripts = tomllib.loads((project / "pyproject.toml").read_text())["project"]["scripts"]
    for target in scripts.values():
        module = target.split(":")[0].split(".")
        assert module[0] == PACKAGE and (project / "src" / f"{'/'.join(module)}.py").is_file()


@pytest.mark.slow
def test_a_network_and_data_of_ones_own_train_with_their_yaml_only(trained):
    ckpt = load(trained / "checkpoints" / "last.ckpt")
    assert ckpt["hyper_parameters"]["net"] == {"_target_": f"{PACKAGE}.two_layer.TwoLayerNet",
                                               "n_in": 2, "width1": 12, "width2": 16,
                                               "n_out": 1}  # fmt: skip
    assert ckpt["global_step"] == 30 * 512 // 64  # its own batches: 8 steps an epoch
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["test/acc"] > 0.85  # it learned the wave (chance: about 0.5)
    # the decision boundary for any 2-input network; the hidden units only for a first
    # layer Linear(2, k) + activation: skipped, said once
    assert (trained / "boundary.png").is_file() and not (trained / "hidden_units.png").exists()
    log = (trained / "train.log").read_text()
    assert log.count("HiddenUnitsPlot skipped: TwoLayerNet has no first layer") == 1


@pytest.mark.slow
def test_hparams_shows_the_networks_own_keys_overridden_or_not(trained):
    names, _ = hparams_tab(trained)
    own = ["callbacks.last_checkpoint.every_n_epochs", "data", "model", "model.width1",
           "trainer.check_val_every_n_epoch", "trainer.max_epochs"]  # fmt: skip
    assert names[:6] == own  # the run's own overrides first (TensorBoard sorts each part)
    assert {"model.width2", "model.net", "data.n_train", "data.batch_size"} <= set(names[6:])


@pytest.mark.slow
def test_a_key_the_network_does_not_take_is_refused_naming_what_it_takes(project):
    proc = run(project, "train", *OWN, "+model.depth=2")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: unknown key model.depth: known keys are net, optimizer, gradient_clip_val, "
        "steps_per_call and the network's arguments "
        f"({PACKAGE}.two_layer.TwoLayerNet takes n_in, width1, width2, n_out)"
    ]


@pytest.mark.slow
def test_eval_predict_and_export_read_the_checkpoint(project, trained):
    best = next((trained / "checkpoints").glob("best-*.ckpt"))
    net = net_of(load(best))
    ok(run(project, "tools.evaluate", f"ckpt_path={best}", "hydra.run.dir=runs/eval"))
    scores = json.loads((project / "runs/eval/metrics.json").read_text())
    X, y = waves(256, 2, 2).tensors  # the test split: seed 0, split 2 (the datamodule's rule)
    with torch.no_grad():
        acc = ((net(X) > 0).float() == y).float().mean().item()
    assert scores["test/acc"] == pytest.approx(acc, abs=1e-6)
    code = (f"from {PACKAGE}.module import XORModule; import torch; "
            f"m = XORModule.load_from_checkpoint('{best}', weights_only=True); "
            "print(m(torch.tensor([[0.3, -0.4]])).item())")  # fmt: skip
    loaded = ok(subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True,
                               text=True, env=env(project)))  # fmt: skip
    with torch.no_grad():
        assert float(loaded.stdout) == pytest.approx(net(torch.tensor([[0.3, -0.4]])).item())

    out = ok(run(project, "tools.predict", f"ckpt_path={best}", "points=[[0.1,0.2],[-0.5,0.9]]",
                 "hydra.run.dir=runs/predict")).stdout.splitlines()  # fmt: skip
    with torch.no_grad():
        probs = torch.sigmoid(net(torch.tensor([[0.1, 0.2], [-0.5, 0.9]]))).flatten().tolist()
    assert out[0] == "x1,x2,prob,label"
    assert [float(line.split(",")[2]) for line in out[1:]] == pytest.approx(probs, abs=1e-6)

    x = torch.rand(50, 2) * 2 - 1
    for fmt in ("onnx", "pt2"):
        ok(run(project, "tools.export", f"ckpt_path={best}", f"format={fmt}",
               f"output={project}/model.{fmt}", "hydra.run.dir=runs/export"))  # fmt: skip
    program = torch.export.load(project / "model.pt2").module()
    import onnxruntime as ort

    session = ort.InferenceSession(str(project / "model.onnx"))
    with torch.no_grad():
        expected = torch.sigmoid(net(x))
        torch.testing.assert_close(program(x), expected, atol=1e-5, rtol=0)
    got = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def killed_then_resumed(project: Path, d: Path, *args: str, steps: int) -> dict:
    """Train with `args` in `d`, slowly, `kill -9` it once it has a last.ckpt (before its
    `steps`), resume it with `resume=`: its last checkpoint then."""
    cmd = [sys.executable, "-m", f"{PACKAGE}.train", *args,
           f"+callbacks.pause._target_={PACKAGE}.probe.Pause", f"hydra.run.dir={d}"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=project, env=env(project), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    wait_for(d / "checkpoints" / "last.ckpt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert load(d / "checkpoints" / "last.ckpt")["global_step"] < steps
    ok(run(project, "train", f"resume={d}"))
    return load(d / "checkpoints" / "last.ckpt")


def assert_same_end(resumed: dict, whole: dict) -> None:
    assert resumed["global_step"] == whole["global_step"]
    for k, v in whole["state_dict"].items():
        assert torch.equal(resumed["state_dict"][k], v), k


@pytest.mark.slow
def test_resume_after_sigkill_is_exact(project, trained):
    d = project / "runs" / "killed"
    resumed = killed_then_resumed(project, d, *OWN, *SHORT, "model.width1=12", steps=30 * 8)
    assert_same_end(resumed, load(trained / "checkpoints/last.ckpt"))


@pytest.mark.slow
def test_a_multirun_and_its_summary(project):
    d = project / "runs" / "sweep"
    ok(run(project, "train", "-m", *OWN, *SHORT, "model.width2=4,8", f"hydra.sweep.dir={d}"))
    with open(d / "summary.csv", newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["job"])
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert [r["overrides"].split()[-1] for r in rows] == ["model.width2=4", "model.width2=8"]
    for job, row in enumerate(rows):
        metrics = json.loads((d / str(job) / "metrics.json").read_text())
        assert float(row["test/acc"]) == pytest.approx(metrics["test/acc"])


@pytest.mark.slow
def test_the_shipped_optuna_search_refuses_keys_the_network_lacks(project):
    proc = run(project, "train", *OWN, "hparams_search=xor_optuna", "hydra.sweep.dir=runs/opt")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: the sweep searches model.activation (hydra.sweeper.params), which "
        f"{PACKAGE}.two_layer.TwoLayerNet does not take (it takes n_in, width1, width2, n_out): "
        "search "
        "your network's keys instead (for hparams_search, a YAML of your own under "
        "conf/hparams_search/)"
    ]
    assert not (project / "runs" / "opt").exists()


@pytest.mark.slow
def test_a_search_of_the_networks_own_keys(project):
    d = project / "runs" / "search"
    ok(run(project, "train", *OWN, *SHORT, "hparams_search=two_layer_optuna",
           "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={d}"))  # fmt: skip
    for job in ("0", "1"):
        record = json.loads((d / job / "job.json").read_text())
        assert record["status"] == "ok"
        keys = {o.split("=")[0] for o in record["overrides"]}
        assert {"model.width1", "model.width2", "model.optimizer.lr"} <= keys


@pytest.mark.slow
def test_csv_with_three_features_sets_n_in_and_predicts_three_columns(project):
    g = torch.Generator().manual_seed(5)
    X = torch.rand(300, 3, generator=g) * 2 - 1
    y = (X[:, 0] + X[:, 2] > 0).long()  # the label follows features 1 and 3
    rows = zip(X.tolist(), y, strict=True)
    lines = [f"{a:.5f},{b:.5f},{c:.5f},{int(t)}" for (a, b, c), t in rows]
    (project / "three.csv").write_text("a,b,c,label\n" + "\n".join(lines) + "\n")
    d = project / "runs" / "csv3"
    ok(run(project, "train", "model=two_layer", "data=csv", "data.path=three.csv", *SHORT,
           f"hydra.run.dir={d}"))  # fmt: skip
    ckpt = load(d / "checkpoints" / "last.ckpt")
    assert ckpt["hyper_parameters"]["net"]["n_in"] == 3
    assert json.loads((d / "metrics.json").read_text())["test/acc"] > 0.85
    assert "BoundaryPlot skipped: the points have 3 inputs" in (d / "train.log").read_text()
    out = ok(run(project, "tools.predict", f"ckpt_path={d}/checkpoints/last.ckpt",
                 "points=[[0.5,0.0,0.5],[-0.5,0.0,-0.5]]", "hydra.run.dir=runs/p3"))  # fmt: skip
    rows = out.stdout.splitlines()
    assert rows[0] == "a,b,c,prob,label" and [r.split(",")[-1] for r in rows[1:]] == ["1", "0"]


@pytest.mark.slow
@pytest.mark.parametrize("data", ["waves", "xor"])
def test_under_ddp_each_rank_sees_half_of_the_points(project, data):
    """The copier's standard datamodule (Lightning's DistributedSampler) and the project's
    (its own RankSampler), in one config: each rank its half, together every point."""
    d = project / "runs" / f"ddp_{data}"
    ok(run(project, "train", "trainer=ddp", f"data={data}", "model=two_layer",
           "trainer.max_epochs=2", f"+callbacks.probe._target_={PACKAGE}.probe.PointsSeen",
           f"hydra.run.dir={d}", timeout=400))  # fmt: skip
    seen = [json.loads((d / f"points_rank{r}.json").read_text()) for r in (0, 1)]
    n = 512 if data == "waves" else 400
    assert len(seen[0]) == len(seen[1]) == n // 2
    assert len({tuple(p) for p in seen[0] + seen[1]}) == n


def test_trust_follows_the_config_files_wherever_they_name_a_class(tmp_path):
    from xor_lightning.targets import trusted

    (tmp_path / "model").mkdir()
    (tmp_path / "experiment").mkdir()
    (tmp_path / "model" / "mine.yaml").write_text("net:\n  _target_: pkg.Mine\n")
    (tmp_path / "experiment" / "big.yaml").write_text(
        "# @package _global_\nmodel:\n  net:\n    _target_: pkg.Big\ndata:\n  _target_: pkg.Data\n"
    )
    (tmp_path / "model" / "opt.yaml").write_text("optimizer:\n  _target_: torch.optim.SGD\n")
    assert trusted("model.net", str(tmp_path)) == {"pkg.Mine", "pkg.Big"}
    assert trusted("data", str(tmp_path)) == {"pkg.Data"}  # a class named elsewhere is not


def test_a_network_no_config_file_names_is_refused_before_it_is_imported(make_cfg, tmp_path):
    from xor_lightning.errors import UserError
    from xor_lightning.train import train

    cfg = make_cfg("model.net._target_=os.mkdir", f"+model.net.path={tmp_path}/PWNED")
    with pytest.raises(UserError, match=r"^model.net._target_='os.mkdir' is named by no config"):
        train(cfg)
    assert not (tmp_path / "PWNED").exists()


def test_n_in_follows_the_data():
    from xor_lightning.config import n_features

    assert n_features({"problem": "xor"}) == 2
    assert n_features({"_target_": "my.Data", "n_features": 5}) == 5  # a datamodule's own


def test_the_hidden_units_picture_applies_to_a_first_layer_on_the_plane():
    from xor_lightning.deep_mlp import DeepMLP
    from xor_lightning.model import MLP
    from xor_lightning.pictures.units import first_layer

    mlp = MLP(hidden=3, activation="relu")
    assert first_layer(mlp) == (mlp.fc1, mlp.act)
    wrapped = torch.nn.Sequential(torch.nn.Identity(), mlp)  # an inner part counts
    assert first_layer(wrapped) == (mlp.fc1, mlp.act)
    deep = DeepMLP(hidden=3, depth=2)  # an nn.Sequential of its own
    assert first_layer(deep) == (deep[0], deep[1])
    assert first_layer(TwoLayerNet()) is None  # no Sequential: its own forward
    assert first_layer(MLP(n_in=3)) is None  # not on the plane
