"""A run dir written before tasks and the chapter's `MLP` class (tests/data/old_run: made
by the previous version with `debug=quick data.batch_size=16 trainer.max_epochs=6`, and
its own 10-epoch run's weights in tests/data/old_run_10_epochs.pt) resumes, is scored,
classifies points and loads with `load_from_checkpoint`, as it did."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import cli, load
from xor_lightning.module import XORModule

OLD = Path(__file__).parent / "data" / "old_run"
OLD_NAMES = {"net.fc1.": "net.0.", "net.fc2.": "net.2."}


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    shutil.copytree(OLD, tmp_path / "old_run")
    return tmp_path / "old_run"


@pytest.mark.slow
def test_an_old_run_resumes_and_trains_as_its_own_version_did(old_run, tmp_path):
    proc = cli("train", f"resume={old_run}", "trainer.max_epochs=10", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    resumed = load(old_run / "checkpoints" / "last.ckpt")
    expected = torch.load(OLD.parent / "old_run_10_epochs.pt", weights_only=True)
    assert resumed["global_step"] == expected["global_step"] == 40  # 4 steps an epoch
    for key, value in resumed["state_dict"].items():
        old = next((key.replace(new, o) for new, o in OLD_NAMES.items() if new in key), key)
        torch.testing.assert_close(value, expected["state_dict"][old], atol=1e-6, rtol=0)


@pytest.mark.slow
def test_an_old_checkpoint_is_scored_and_classifies_points(old_run, tmp_path):
    best = old_run / "checkpoints" / "best-epoch005.ckpt"
    proc = cli("tools.evaluate", f"ckpt_path={best}", f"hydra.run.dir={tmp_path}/e", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    scored = json.loads((tmp_path / "e" / "metrics.json").read_text())
    then = json.loads((old_run / "metrics.json").read_text())  # its own test of this file
    assert scored["test/acc"] == pytest.approx(then["test/acc"], abs=1e-6)
    assert scored["test/loss"] == pytest.approx(then["test/loss"], abs=1e-6)
    proc = cli("tools.predict", f"ckpt_path={best}", "points=[[0.5,-0.5]]",
               f"hydra.run.dir={tmp_path}/p", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.splitlines()[0] == "x1,x2,prob,label"
    module = XORModule.load_from_checkpoint(best, weights_only=True)
    assert type(module.net).__name__ == "MLP" and module.net.fc1.weight.shape == (8, 2)
