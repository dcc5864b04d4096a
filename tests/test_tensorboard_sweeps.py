"""The TensorBoard summary of a vectorised sweep: per fit, the mean and the 10th and 90th
percentiles of the jobs' curves, as runs `tb/<group>/{mean,p10,p90}` at the sweep's root.

The expected values are computed here from what TensorBoard reads in the jobs' own dirs
(their `train` and `val` sub-runs), with Python's `statistics`, not from the fit's results
the summary is written from."""

from __future__ import annotations

import math
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.conftest import cli, curves, hparams_tab
from xor_lightning.files import read_json
from xor_vectorized.tensorboard import write_summary

SUMMARY_TAGS = {"acc/train", "acc/val", "loss/train", "loss/val"}


def expected(values: list[float]) -> dict[str, float]:
    """Mean, and the 10th and 90th percentiles by linear interpolation between the sorted
    values (`statistics.quantiles(..., method="inclusive")`: numpy's default method)."""
    if len(values) == 1:
        return {"mean": values[0], "p10": values[0], "p90": values[0]}
    deciles = statistics.quantiles(values, n=10, method="inclusive")
    return {"mean": statistics.fmean(values), "p10": deciles[0], "p90": deciles[8]}


def summary_of(sweep: Path, run: str, n_jobs: int, n_failed: int, last: int) -> None:
    """The summary runs `run/{mean,p10,p90}` equal the statistics of the jobs' own curves,
    over the jobs still training (`n_failed` of them fail); a failed job's curves end as its
    run alone's do; HPARAMS lists the jobs alone (the summary runs are not sessions)."""
    found = curves(sweep)
    jobs = sorted(p for p in sweep.iterdir() if (p / "job.json").is_file())
    assert len(jobs) == n_jobs
    failed_at = {}  # job -> the epoch its loss became non-finite
    for job in jobs:
        record = read_json(job / "job.json")
        if record["status"] == "failed":
            failed_at[job.name] = int(re.search(r"at epoch (\d+)", record["error"]).group(1))
    assert len(failed_at) == n_failed  # the exclusion below is exercised
    for job, epoch in failed_at.items():
        steps = [s for sub in ("train", "val") for s, _ in found.get(f"{job}/{sub}", {}).get(
                 "loss", [])]  # fmt: skip
        assert steps and max(steps) < epoch, (job, steps)

    # The runs TensorBoard lists at the sweep's root, and their tags
    summary = {name: tags for name, tags in found.items() if name.startswith("tb/")}
    assert set(summary) == {f"{run}/mean", f"{run}/p10", f"{run}/p90"}
    assert set(summary[f"{run}/mean"]) == SUMMARY_TAGS | {"models/train", "models/val"}
    assert set(summary[f"{run}/p10"]) == set(summary[f"{run}/p90"]) == SUMMARY_TAGS

    for tag in sorted(SUMMARY_TAGS):
        metric, stage = tag.split("/")
        per_step: dict[int, list[float]] = {}
        for job in jobs:
            for step, value in found.get(f"{job.name}/{stage}", {}).get(metric, []):
                epoch = step  # full batches: one step an epoch
                if epoch < failed_at.get(job.name, math.inf) and math.isfinite(value):
                    per_step.setdefault(step, []).append(value)
        counts = dict(found[f"{run}/mean"][f"models/{stage}"])
        assert {s: len(v) for s, v in per_step.items()} == counts
        assert counts[last] == n_jobs - n_failed  # the failed ones are counted out
        for stat in ("mean", "p10", "p90"):
            got = dict(found[f"{run}/{stat}"][tag])
            assert sorted(got) == sorted(per_step), (tag, stat)
            for step, values in per_step.items():
                assert got[step] == pytest.approx(expected(values)[stat], rel=1e-6), (tag, step)
    _, sessions = hparams_tab(sweep)
    assert sorted(sessions) == sorted(j.name for j in jobs if j.name not in failed_at)
    metrics = {"best/acc", "best/loss", "test/acc", "test/loss"}  # none of the summary's
    assert all(set(values) == metrics for values in sessions.values())


@pytest.mark.slow
def test_a_vectorised_sweep_summary_equals_the_statistics_of_its_jobs_curves(tmp_path):
    """8 seeds of a 3-unit network with a noisy dataset, half of them with a learning rate
    that makes the loss non-finite at epoch 1: the summary is over the jobs still training."""
    sweep = tmp_path / "sweep"
    args = ["-m", "seed=range(4)", "model.optimizer.lr=0.05,1e38", "model.hidden=3",
            "data.noise=0.3", "trainer.max_epochs=30", "hydra/launcher=vectorized",
            f"hydra.sweep.dir={sweep}"]  # fmt: skip
    proc = cli("train", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary_of(sweep, "tb/group0", n_jobs=8, n_failed=4, last=29)


@pytest.mark.slow
def test_a_basic_sweep_summary_equals_the_statistics_of_its_jobs_curves(tmp_path):
    """The basic launcher, one job a process: its summary (`tb/sweep`) comes from the jobs'
    curves at the sweep's end; two of the four jobs fail at epoch 1."""
    sweep = tmp_path / "sweep"
    args = ["-m", "seed=1,2", "model.optimizer.lr=0.05,1e38", "model.hidden=4",
            "trainer.max_epochs=12", "trainer.check_val_every_n_epoch=3",
            f"hydra.sweep.dir={sweep}"]  # fmt: skip
    proc = cli("train", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary_of(sweep, "tb/sweep", n_jobs=4, n_failed=2, last=11)


def fake_result(history: dict[str, np.ndarray], failed: list[int], stopped: list[int]) -> object:
    """What `write_summary` reads of a `GroupResult`: `series`, `failed_at`, `stopped_at`."""
    epochs = np.arange(next(iter(history.values())).shape[0])
    return SimpleNamespace(
        series=lambda key: (epochs, history[key]),
        failed_at=torch.tensor([[e, 0] for e in failed]),
        stopped_at=torch.tensor(stopped),
        extra={"batches_per_epoch": 2},
        metric_names=("acc",),
    )


def test_summary_leaves_out_failed_pruned_and_non_finite_values(tmp_path):
    """Four models over three epochs, by hand: model 1's loss became non-finite in epoch 1,
    a pruner stopped model 2 after epoch 0, model 3's val loss is inf in epoch 2."""
    loss = np.array([[1.0, 2.0, 3.0, 4.0], [0.5, 9.0, 9.0, 1.5], [0.25, 9.0, 9.0, 1.0]])
    acc = np.array([[0.5, 0.5, 0.5, 0.75], [0.75, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 1.0]])
    val_loss = loss.copy()
    val_loss[2, 3] = np.inf
    history = {"train/loss": loss, "train/acc": acc, "val/loss": val_loss, "val/acc": acc}
    root = write_summary(tmp_path, "group7", fake_result(history, [-1, 1, -1, -1], [-1, -1, 0, -1]))
    assert root == tmp_path / "tb" / "group7"
    found = curves(tmp_path)
    # steps: (epoch + 1) * 2 - 1, Lightning's logging step with 2 batches an epoch
    mean, p10 = found["tb/group7/mean"], found["tb/group7/p10"]
    assert mean["models/train"] == [(1, 4.0), (3, 2.0), (5, 2.0)]
    assert mean["models/val"] == [(1, 4.0), (3, 2.0), (5, 1.0)]
    assert mean["loss/train"] == [(1, 2.5), (3, 1.0), (5, 0.625)]
    assert mean["loss/val"] == [(1, 2.5), (3, 1.0), (5, 0.25)]
    assert mean["acc/val"] == [(1, 0.5625), (3, 0.875), (5, 1.0)]
    # p10 of 1, 2, 3, 4: 1 + 0.3 * (2 - 1); of 0.5, 1.5: 0.5 + 0.1 * 1
    assert p10["loss/train"] == [(1, pytest.approx(1.3)), (3, pytest.approx(0.6)),
                                 (5, pytest.approx(0.325))]  # fmt: skip


def test_a_rerun_replaces_the_summary(tmp_path):
    """The same group written twice (a rerun into the same sweep dir): one events file a run,
    the second's values."""
    ones = {k: np.ones((2, 3)) for k in ("train/loss", "train/acc", "val/loss", "val/acc")}
    write_summary(tmp_path, "group0", fake_result(ones, [-1] * 3, [-1] * 3))
    halves = {k: v / 2 for k, v in ones.items()}
    write_summary(tmp_path, "group0", fake_result(halves, [-1] * 3, [-1] * 3))
    for stat in ("mean", "p10", "p90"):
        assert len(list(Path(tmp_path, "tb", "group0", stat).iterdir())) == 1
    assert curves(tmp_path)["tb/group0/mean"]["loss/train"] == [(1, 0.5), (3, 0.5)]


@pytest.mark.slow
def test_hparams_lists_sessions_past_a_thousand(tmp_path):
    """HPARAMS' 1,000 (`hparamsLimit`, what its UI asks for) caps hyperparameters, not
    sessions: 1,001 sessions, the page from index 1,000 holds the last one."""
    from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams.hparams_plugin import HParamsPlugin
    from werkzeug.test import Client

    from xor_lightning.tb_logger import session_summaries
    from xor_vectorized.tensorboard import scalar, write_events

    for job in range(1001):
        write_events(tmp_path / str(job), [(s, 0) for s in session_summaries({"seed": job})])
        write_events(tmp_path / str(job) / "test", [(scalar("acc", job / 1000), 9)])
    mux = EventMultiplexer().AddRunsFromDirectory(str(tmp_path))
    mux.Reload()
    provider = MultiplexerDataProvider(mux, str(tmp_path))
    context = base_plugin.TBContext(logdir=str(tmp_path), multiplexer=mux, data_provider=provider)
    apps = HParamsPlugin(context).get_plugin_apps()
    exp = Client(apps["/experiment"]).post("/", json={"experimentName": "", "hparamsLimit": 1000})
    assert [h["name"] for h in exp.get_json()["hparamInfos"]] == ["seed"]
    request = {"experimentName": "", "colParams": [{"hparam": "seed", "order": "ORDER_ASC"}],
               "startIndex": 1000, "sliceSize": 100,
               "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS"]}  # fmt: skip
    page = Client(apps["/session_groups"]).post("/", json=request).get_json()
    assert page["totalSize"] == 1001
    assert [g["hparams"]["seed"] for g in page["sessionGroups"]] == [1000]


@pytest.mark.slow
def test_an_interrupted_fit_writes_its_summary_and_the_resumed_fit_replaces_it(tmp_path):
    """SIGTERM mid-fit: the summary so far; the same command resumes the sweep, and the
    summary then holds the epochs after the resume, over the jobs that resumed."""
    sweep = tmp_path / "s"
    args = ["-m", "seed=range(4)", "model.hidden=5", "trainer.max_epochs=300",
            "hydra/launcher=vectorized", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    log = tmp_path / "log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "xor_lightning.train", *args],
                                cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 120
        while "epoch    0" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    first = curves(sweep / "tb")["group0/mean"]
    stopped = first["models/train"][-1][0]  # the last epoch trained (one step an epoch)
    assert 0 <= stopped < 299 and [c for _, c in first["models/train"]] == [4.0] * (stopped + 1)
    resumed = cli("train", *args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    again = curves(sweep / "tb")["group0/mean"]
    steps = [s for s, _ in again["loss/train"]]
    assert steps == list(range(steps[0], 300)) and steps[0] > stopped
    assert {c for _, c in again["models/train"]} == {4.0}
