"""The entry points as a user runs them: subprocesses, exit codes, what they print."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import cli, load
from xor_lightning import intro

REPO = Path(__file__).resolve().parents[1]
RUN_FILES = {".hydra", "checkpoints", "metrics.json", "train.log"}


def run(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = cli("train", *args, cwd=cwd)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def assert_complete_run_dir(d: Path) -> None:
    assert {p.name for p in d.iterdir()} >= RUN_FILES, sorted(p.name for p in d.iterdir())
    assert list(d.glob("events.out.tfevents.*"))
    assert (d / "checkpoints" / "last.ckpt").is_file()
    assert (d / ".hydra" / "config.yaml").is_file()
    assert set(json.loads((d / "metrics.json").read_text())) >= {"val/acc", "test/acc"}


def test_intro_prints_the_chapters_outputs_in_order(capsys):
    intro.main([])
    lines = capsys.readouterr().out.splitlines()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    expected_start = [
        "shape: (2, 3) dtype: torch.float32",
        "a.mean(): 3.5",
        "a @ a.T:",
        " tensor([[14., 32.],",
        "        [32., 77.]])",
        "torch.float64",
        "y: 13.0",
        "x.grad: tensor([4., 6.])",
        "X is a tensor of shape (400, 2), dtype torch.float32",
        f"device: {device} (CUDA available: {torch.cuda.is_available()})",
    ]
    assert lines[: len(expected_start)] == expected_start
    epochs = lines[len(expected_start) : -1]
    pattern = re.compile(r"epoch (\d+) loss (\d\.\d{4}) train-acc (\d\.\d{3})")
    matches = [pattern.fullmatch(line) for line in epochs]
    assert all(matches), epochs
    assert [int(m[1]) for m in matches] == [0, 100, 200, 300, 400]
    losses = [float(m[2]) for m in matches]
    assert losses[0] > 0.6 and losses[-1] < 0.1 and losses == sorted(losses, reverse=True)
    assert float(matches[-1][3]) >= 0.99
    assert lines[-1] == "model has 33 learnable parameters"


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_without_a_gpu_is_a_clear_error(tmp_path):
    proc = run(
        "trainer.accelerator=gpu", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path, check=False
    )
    assert proc.returncode == 2
    assert "no GPU was found" in proc.stderr and "accelerator=cpu" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()  # nothing half-written


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_training(tmp_path):
    run("trainer.accelerator=gpu", "debug=quick", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert_complete_run_dir(tmp_path / "run")


@pytest.mark.slow
def test_two_runs_at_once_from_another_cwd_get_their_own_dirs(tmp_path):
    cmd = [sys.executable, "-m", "xor_lightning.train", "debug=quick"]
    procs = [
        subprocess.Popen(
            cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:]
    dirs = sorted((tmp_path / "outputs" / "runs").iterdir())
    # never shared, even when started in the same second: <date>_<time>_<pid>
    stamp = r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d"
    assert sorted(int(re.fullmatch(rf"{stamp}_(\d+)", d.name)[1]) for d in dirs) == sorted(
        p.pid for p in procs
    )
    for d in dirs:
        assert_complete_run_dir(d)
    stdout = outs[0][0]
    assert "best val/acc" in stdout and "test/acc" in stdout and "tensorboard" in stdout
    assert "run dir:" in stdout
    assert "Traceback" not in outs[0][1]
    # train.log: the console lines with timestamps, and Lightning's own messages
    run_dir = tmp_path / stdout.split("run dir: ")[1].split()[0]
    log = (run_dir / "train.log").read_text()
    when = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    for line in stdout.splitlines():
        assert re.search(rf"^\[{when}\]\[[\w.]+\]\[INFO\] {re.escape(line)}$", log, re.M)
    assert re.search(
        rf"^\[{when}\]\[lightning.pytorch[\w.]*\]\[INFO\] `Trainer.fit` stopped", log, re.M
    )


@pytest.mark.slow
def test_explicit_run_dir_is_honoured_even_when_it_exists(tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "note.txt").write_text("keep me")
    run("debug=quick", f"hydra.run.dir={target}", cwd=REPO)
    assert_complete_run_dir(target)
    assert (target / "note.txt").read_text() == "keep me"


@pytest.mark.slow
def test_multirun_puts_each_job_in_its_own_numbered_dir(tmp_path):
    sweep = tmp_path / "sweep"
    run("-m", "model.hidden=2,4", "debug=quick", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    for job, hidden in [(0, 2), (1, 4)]:
        assert_complete_run_dir(sweep / str(job))
        ckpt = load(sweep / str(job) / "checkpoints" / "last.ckpt")
        assert ckpt["state_dict"]["net.fc1.weight"].shape == (hidden, 2)


@pytest.mark.slow
def test_make_train_passes_accelerator_and_args_even_with_m(tmp_path):
    sweep_dir = tmp_path / "sw"
    args = f"-m model.hidden=2,4 debug=quick hydra.sweep.dir={sweep_dir}"
    proc = subprocess.run(
        ["make", "train", "accelerator=cpu", f"ARGS={args}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "trainer.accelerator=cpu" in proc.stdout  # the command make ran
    for job in (0, 1):
        assert_complete_run_dir(sweep_dir / str(job))
