"""Sweeps on a real SLURM cluster: a one-node cluster on loopback (tests/slurm_cluster.sh).

CI installs SLURM first (`.ci/run`); where it is missing or cannot start, these tests are
skipped with the reason.
"""

import csv
import json
import os
from pathlib import Path

import pytest

from tests.conftest import cli

pytestmark = pytest.mark.slow  # the cluster: the `slurm_env` fixture (conftest.py)


def slurm_sweep(tmp_path: Path, env: dict[str, str], *args: str) -> Path:
    d = tmp_path / "sweep"
    launcher = ["hydra/launcher=submitit_slurm", "hydra.launcher.partition=debug",
                "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={d}"]  # fmt: skip
    proc = cli("train", "-m", *launcher, *args, "debug=quick", "logger=none", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return d


def test_two_job_sweep_runs_through_sbatch(slurm_env, tmp_path):
    d = slurm_sweep(tmp_path, slurm_env, "hydra.launcher.cpus_per_task=1", "model.hidden=4,8")
    with open(d / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["overrides"].split()[0] for r in rows) == ["model.hidden=4", "model.hidden=8"]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    slurm_jobs = set()
    for job in ("0", "1"):
        record = json.loads((d / job / "job.json").read_text())
        assert record["status"] == "ok" and (d / job / "metrics.json").is_file()
        slurm_jobs.add(record["slurm_job_id"])
    assert None not in slurm_jobs and len(slurm_jobs) == 2  # each ran as its own SLURM job
    assert sorted(p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")) == [
        "0",
        "1",
    ]


def test_ddp_job_with_one_slurm_task_per_rank(slurm_env, tmp_path):
    # SLURM starts the ranks (tasks_per_node = trainer.devices); Lightning joins them up.
    d = slurm_sweep(
        tmp_path, slurm_env, "trainer=ddp", "hydra.launcher.tasks_per_node=2",
        "hydra.launcher.cpus_per_task=1",
    )  # fmt: skip
    record = json.loads((d / "0" / "job.json").read_text())
    assert record["status"] == "ok" and record["slurm_job_id"]
    assert (
        "world size: 2"
        in (d / ".submitit")
        .joinpath(f"{record['slurm_job_id']}", f"{record['slurm_job_id']}_0_log.out")
        .read_text()
    )
    assert (d / "0" / "metrics.json").is_file()
    ckpts = sorted(os.listdir(d / "0" / "checkpoints"))  # written once, by rank 0
    assert len(ckpts) == 2 and ckpts[0].startswith("best-") and ckpts[1] == "last.ckpt"
