"""Using a trained model: evaluate, predict, export, and refusing bad checkpoints."""

import json
import logging
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import cli, compose_app
from xor_lightning.checkpoint import load_checkpoint
from xor_lightning.data import make_xor
from xor_lightning.errors import UserError
from xor_lightning.tools.evaluate import evaluate
from xor_lightning.tools.export import export
from xor_lightning.tools.predict import predict

HEADER = "x1,x2,prob,label"  # the binary task's table

# ---------------------------------------------------------------- evaluate


def test_evaluate_scores_the_checkpoint_alone_and_writes_metrics(trained_ckpt, tmp_path):
    alone = tmp_path / "alone.ckpt"  # no run dir beside it
    alone.write_bytes(trained_ckpt.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    metrics = evaluate(compose_app("evaluate", f"ckpt_path={alone}", f"paths.output_dir={out}"))
    assert list(metrics) == ["val/loss", "val/acc", "test/loss", "test/acc"]
    assert json.loads((out / "metrics.json").read_text()) == pytest.approx(metrics)
    saved = load_checkpoint(trained_ckpt)["metrics"]  # scored during training
    assert metrics["val/acc"] == pytest.approx(saved["val/acc"])
    assert metrics["val/loss"] == pytest.approx(saved["val/loss"], abs=1e-6)
    X, y = make_xor(400, seed=0, split=2)  # the run's test set (seed 0)
    probs = expected_probs(trained_ckpt, X)
    assert metrics["test/acc"] == pytest.approx(
        ((probs >= 0.5).float() == y.squeeze(1)).float().mean().item()
    )
    assert metrics["test/loss"] == pytest.approx(
        torch.nn.functional.binary_cross_entropy(probs, y.squeeze(1)).item(), abs=1e-5
    )


def test_evaluate_data_overrides_change_the_test_set(trained_ckpt, tmp_path):
    base = compose_app("evaluate", f"ckpt_path={trained_ckpt}", f"paths.output_dir={tmp_path}")
    clean = evaluate(base)
    noisy = evaluate(
        compose_app(
            "evaluate",
            f"ckpt_path={trained_ckpt}",
            f"paths.output_dir={tmp_path}",
            "data.noise=0.5",
            "data.n_test=3000",
        )
    )
    assert noisy["test/acc"] < clean["test/acc"] - 0.1  # labels blurred by heavy jitter


@pytest.mark.slow
def test_evaluate_cli_prints_and_writes_the_scores_in_its_run_dir(trained_ckpt, tmp_path):
    proc = cli("tools.evaluate", f"ckpt_path={trained_ckpt}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    [run] = (tmp_path / "outputs" / "evaluate").iterdir()
    written = json.loads((run / "metrics.json").read_text())
    assert list(written) == ["val/loss", "val/acc", "test/loss", "test/acc"]
    for key, value in written.items():
        assert f"{key:<9} {value:.4f}" in proc.stdout.splitlines()


# ---------------------------------------------------------------- predict


def run_predict(ckpt, tmp_path, capsys, *overrides):
    predict(compose_app("predict", f"ckpt_path={ckpt}", f"paths.output_dir={tmp_path}", *overrides))
    return capsys.readouterr().out


def expected_probs(ckpt: Path, points) -> torch.Tensor:
    """By hand from the checkpoint's tensors: sigmoid(W2 tanh(W1 x + b1) + b2)."""
    w = torch.load(ckpt, weights_only=True)["state_dict"]
    x = torch.as_tensor(points, dtype=torch.float32)
    hidden = torch.tanh(x @ w["net.fc1.weight"].T + w["net.fc1.bias"])
    return torch.sigmoid(hidden @ w["net.fc2.weight"].T + w["net.fc2.bias"]).squeeze(1)


def test_predict_points_prints_a_csv_table(trained_ckpt, tmp_path, capsys):
    out = run_predict(trained_ckpt, tmp_path, capsys, "points=[[0.6,-0.7],[0.5,0.5],[-0.9,0.8]]")
    lines = out.splitlines()
    assert lines[0] == HEADER and len(lines) == 4
    rows = [line.split(",") for line in lines[1:]]
    assert [r[:2] for r in rows] == [["0.6", "-0.7"], ["0.5", "0.5"], ["-0.9", "0.8"]]
    probs = expected_probs(trained_ckpt, [[0.6, -0.7], [0.5, 0.5], [-0.9, 0.8]])
    for row, p in zip(rows, probs.tolist(), strict=True):
        assert float(row[2]) == pytest.approx(p, abs=1e-6)
        assert row[3] == str(int(p >= 0.5))
    assert [r[3] for r in rows] == ["1", "0", "1"]  # XOR, learned


@pytest.mark.parametrize("header", [True, False])
def test_predict_csv_in_order_and_to_a_file(trained_ckpt, tmp_path, capsys, header):
    points = [[0.1 * i - 0.5, 0.3 - 0.07 * i] for i in range(11)]
    src = tmp_path / "points.csv"
    src.write_text(("x1,x2\n" if header else "") + "".join(f"{a},{b}\n" for a, b in points))
    out_file = tmp_path / "pred.csv"
    out = run_predict(
        trained_ckpt, tmp_path, capsys, f"input={src}", f"output={out_file}", "batch_size=4"
    )
    assert out_file.read_text() == out
    lines = out.splitlines()
    assert lines[0] == HEADER and len(lines) == 12
    assert [[float(v) for v in line.split(",")[:2]] for line in lines[1:]] == points
    probs = expected_probs(trained_ckpt, points)
    assert [float(line.split(",")[2]) for line in lines[1:]] == pytest.approx(
        probs.tolist(), abs=1e-6
    )


BAD_ROWS = [
    ("0.1,0.2\n0.3,\n", "line 2: missing value"),
    ("x1,x2\n0.1,0.2\n0.3,abc\n", "line 3: 'abc' is not a number"),
    ("0.1,nan\n", "line 1: 'nan' is not a finite number"),
    ("0.1,0.2\n0.1,0.2,0.3\n", "line 2: expected 2 columns"),
    ("0.5\n", "line 1: expected 2 columns"),
]


@pytest.mark.parametrize(("content", "message"), BAD_ROWS)
def test_predict_refuses_a_malformed_row_and_writes_nothing(
    trained_ckpt, tmp_path, capsys, content, message
):
    src, out_file = tmp_path / "bad.csv", tmp_path / "pred.csv"
    src.write_text(content)
    with pytest.raises(UserError, match=message):
        run_predict(trained_ckpt, tmp_path, capsys, f"input={src}", f"output={out_file}")
    assert capsys.readouterr().out == ""  # not even the header
    assert list(tmp_path.iterdir()) == [src]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([], r"^give exactly one of points=\[\[x1,x2\],...\] or input=<file.csv>$"),
        (["points=[[0.1,0.2]]", "input=x.csv"], r"^give exactly one of points="),
        (["points=[[0.1]]"], r"^points\[0\]: expected a pair \[x1,x2\], got \[0.1\]$"),
        (["input=missing.csv"], r"^missing.csv: no such file$"),
        (["points=[[0.1,0.2]]", "batch_size=0"], r"^batch_size must be >= 1, got 0$"),
    ],
)
def test_predict_refuses_bad_arguments(trained_ckpt, tmp_path, capsys, overrides, message):
    with pytest.raises(UserError, match=message):
        run_predict(trained_ckpt, tmp_path, capsys, *overrides)


@pytest.mark.slow
def test_predict_cli_streams_a_million_rows_in_bounded_memory(trained_ckpt, tmp_path):
    rng = np.random.default_rng(0)
    small, big = tmp_path / "small.csv", tmp_path / "big.csv"
    np.savetxt(big, rng.uniform(-1, 1, (1_000_000, 2)), fmt="%.5f", delimiter=",")
    np.savetxt(small, rng.uniform(-1, 1, (1_000, 2)), fmt="%.5f", delimiter=",")

    def peak_rss_mb(src: Path) -> float:
        code = (
            "import resource, subprocess, sys;"
            "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL);"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
        )
        args = [sys.executable, "-m", "xor_lightning.tools.predict", f"ckpt_path={trained_ckpt}"]
        args += [f"input={src}", f"output={src}.out", f"hydra.run.dir={tmp_path}/run"]
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return int(proc.stdout) / 1024

    growth = peak_rss_mb(big) - peak_rss_mb(small)
    assert growth < 100, f"memory grew by {growth:.0f} MB for 1M rows"
    assert Path(f"{big}.out").read_text().count("\n") == 1_000_001


@pytest.mark.slow
def test_predict_cli_error_is_one_line_with_the_line_number(trained_ckpt, tmp_path):
    src = tmp_path / "bad.csv"
    src.write_text("0.1,0.2\n0.3,abc\n")
    proc = cli("tools.predict", f"ckpt_path={trained_ckpt}", f"input={src}", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == f"error: {src} line 2: 'abc' is not a number"


# ---------------------------------------------------------------- export


@pytest.mark.slow
def test_export_onnx_any_batch_size_matches_pytorch(trained_ckpt, tmp_path):
    import onnxruntime as ort

    path = export(
        compose_app("export", f"ckpt_path={trained_ckpt}", f"paths.output_dir={tmp_path}")
    )
    assert path == tmp_path / "model.onnx"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no temp file left
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["prob"]
    for n in (1, 7, 5000):
        x = torch.rand(n, 2) * 2 - 1
        got = session.run(None, {"x": x.numpy()})[0]
        assert got.shape == (n, 1)
        np.testing.assert_allclose(
            got, expected_probs(trained_ckpt, x).unsqueeze(1).numpy(), atol=1e-5
        )


@pytest.mark.slow
def test_export_pt2_loads_with_torch_export(trained_ckpt, tmp_path, caplog):
    out = tmp_path / "m.pt2"
    with caplog.at_level(logging.INFO, logger="xor_lightning.tools.export"):
        export(compose_app("export", f"ckpt_path={trained_ckpt}", "format=pt2", f"output={out}"))
    program = torch.export.load(out)
    x = torch.rand(33, 2)
    torch.testing.assert_close(program.module()(x).squeeze(1), expected_probs(trained_ckpt, x))
    assert re.search(
        r"max \|exported - pytorch\| on a 10201-point grid: \d\.\d\de[+-]\d\d", caplog.text
    )


def test_an_export_that_differs_from_pytorch_is_refused_and_not_written(
    trained_ckpt, tmp_path, monkeypatch
):
    from xor_lightning.tools import export as export_module

    real = export_module._pt2
    monkeypatch.setattr(export_module, "_pt2", lambda *a: real(*a) + 2e-5)
    out = tmp_path / "m.pt2"
    with pytest.raises(
        UserError, match=r"^exported model differs from PyTorch by 2\.\d+e-05 > 1e-05$"
    ):
        export(compose_app("export", f"ckpt_path={trained_ckpt}", "format=pt2", f"output={out}"))
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_unknown_format(trained_ckpt, tmp_path):
    with pytest.raises(UserError, match="format must be one of onnx, pt2"):
        export(compose_app("export", f"ckpt_path={trained_ckpt}", "format=torchscript"))


# ---------------------------------------------------------------- bad checkpoints


class RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def bad_checkpoints(tmp_path: Path, good: Path) -> dict[str, tuple[Path, str]]:
    data = good.read_bytes()
    (tmp_path / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.ckpt").write_text("not a checkpoint\n")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.ckpt")
    torch.save({"state_dict": {}, "x": RunsCode(tmp_path / "PWNED")}, tmp_path / "evil.ckpt")
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump(RunsCode(tmp_path / "PWNED"), f, protocol=2)
    return {
        "missing": (tmp_path / "nope.ckpt", "checkpoint not found"),
        "truncated": (tmp_path / "truncated.ckpt", "not a readable checkpoint"),
        "text": (tmp_path / "text.ckpt", "not a readable checkpoint"),
        "foreign": (tmp_path / "foreign.ckpt", "not an xor-lightning checkpoint"),
        "evil": (tmp_path / "evil.ckpt", "would run code"),
        "evil-pickle": (tmp_path / "evil.pkl", "would run code"),
    }


KINDS = ["missing", "truncated", "text", "foreign", "evil", "evil-pickle"]
APPS = {
    "evaluate": lambda c, out: evaluate(
        compose_app("evaluate", f"ckpt_path={c}", f"paths.output_dir={out}")
    ),
    "predict": lambda c, out: predict(
        compose_app("predict", f"ckpt_path={c}", "points=[[0.1,0.2]]")
    ),
    "export": lambda c, out: export(
        compose_app("export", f"ckpt_path={c}", f"paths.output_dir={out}")
    ),
}


@pytest.mark.parametrize("app", list(APPS))
@pytest.mark.parametrize("kind", KINDS)
def test_bad_checkpoint_is_refused_and_no_code_runs(trained_ckpt, tmp_path, app, kind):
    path, message = bad_checkpoints(tmp_path, trained_ckpt)[kind]
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UserError, match=message):
        APPS[app](path, out)
    assert not (tmp_path / "PWNED").exists()
    assert list(out.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("module", ["tools.evaluate", "train"])
def test_cli_bad_checkpoint_is_one_line_and_exit_2(trained_ckpt, tmp_path, module):
    path, _ = bad_checkpoints(tmp_path, trained_ckpt)["evil"]
    proc = cli(module, f"ckpt_path={path}", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: refusing") and "would run code" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "PWNED").exists()
    assert not (tmp_path / "run").exists()
