"""`hydra/launcher=vectorized_slurm`: the vectorised launcher's fits packed into SLURM array
tasks, on the one-node cluster the SLURM tests start (tests/slurm_cluster.sh; skipped where
it cannot). The parts that need no cluster: test_slurm_array.py."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import cli
from tests.test_slurm_array import fake_command

SEEDS = "seed=1,2,3,4,5,6"
pytestmark = pytest.mark.slow  # the cluster: the `slurm_env` fixture (conftest.py)


# Each sweep is a real SLURM array, its tasks running the project.
TRACKER = """
import os
from pathlib import Path
from hydra.experimental.callback import Callback

class Tracker(Callback):
    def note(self, config, line):
        with open(Path(config.hydra.sweep.dir) / "tracked.txt", "a") as f:
            f.write(f"{line} {os.environ.get('SLURM_ARRAY_TASK_ID')}\\n")

    def on_job_start(self, config, **kwargs):
        self.note(config, f"start {config.hydra.job.num}")

    def on_job_end(self, config, job_return, **kwargs):
        self.note(config, f"end {config.hydra.job.num} {job_return.status.name} "
                          f"{job_return.return_value}")
"""


def sweep(tmp_path: Path, env: dict[str, str], name: str, *args: str):
    """`xor-train -m ... hydra/launcher=vectorized_slurm` on partition debug, one CPU a task."""
    d = tmp_path / name
    launcher = ["hydra/launcher=vectorized_slurm", "hydra.launcher.partition=debug",
                "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10",
                f"hydra.sweep.dir={d}"]  # fmt: skip
    return d, cli("train", "-m", *launcher, *args, "debug=quick", cwd=tmp_path, env=env)


def record(d: Path, job: int) -> dict:
    return json.loads((d / str(job) / "job.json").read_text())


def test_six_seeds_run_as_two_array_tasks_with_the_local_vectorised_results(slurm_env, tmp_path):
    (tmp_path / "tracker.py").write_text(TRACKER)
    d, proc = sweep(tmp_path, slurm_env, "slurm", SEEDS, "hydra.launcher.models_per_task=3",
                    "logger=none", "+hydra.callbacks.tracker._target_=tracker.Tracker")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [record(d, j) for j in range(6)]
    assert {r["status"] for r in records} == {"ok"}
    assert {r["vectorized"]["models"] for r in records} == {3}
    tasks = [r["slurm_array_task_id"] for r in records]
    assert tasks == ["0", "0", "0", "1", "1", "1"]
    assert len({r["slurm_job_id"] for r in records}) == 2  # each task its own SLURM job
    assert len({r["slurm_array_job_id"] for r in records}) == 1  # of one array
    assert {r["threads"] for r in records} == {1}  # cpus_per_task=1
    array_id = records[0]["slurm_array_job_id"]
    for task in ("0", "1"):  # the task's log, as docs/distributed.md says where
        assert (d / ".submitit" / f"{array_id}_{task}" / f"{array_id}_{task}_0_log.out").is_file()
    assert pq.read_table(d / "results.parquet").num_rows == 6
    assert not (d / ".tasks").exists()
    # Hydra's job callbacks fired in the task that ran the job, with its return
    tracked = sorted((d / "tracked.txt").read_text().split("\n")[:-1])
    for j in range(6):
        value = json.loads((d / str(j) / "metrics.json").read_text())["val/acc"]
        assert f"start {j} {tasks[j]}" in tracked
        assert f"end {j} COMPLETED {value} {tasks[j]}" in tracked
    assert len(tracked) == 12
    # The same sweep in one process, its fits of 3 (the same grouping), gives the same results
    local = tmp_path / "local"
    vectorized = ["hydra/launcher=vectorized", "hydra.launcher.max_models_per_fit=3"]
    proc = cli("train", "-m", *vectorized, SEEDS, "logger=none", "debug=quick",
               f"hydra.sweep.dir={local}", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    for j in range(6):
        ours, theirs = (json.loads((x / str(j) / "metrics.json").read_text()) for x in (d, local))
        for key in ("val/acc", "test/acc", "val/loss", "test/loss"):
            assert ours[key] == pytest.approx(theirs[key], abs=1e-6), (j, key)


def test_a_failed_task_fails_its_jobs_in_one_line_and_a_rerun_trains_only_those(
    slurm_env, tmp_path
):
    bin_dir = tmp_path / "bin"  # this cluster's MaxArraySize, made 2
    bin_dir.mkdir()
    real = shutil.which("scontrol")
    two = "sed 's/^MaxArraySize .*/MaxArraySize = 2/'"
    script = f'if [ "$1 $2" = "show config" ]; then {real} "$@" | {two}; else exec {real} "$@"; fi'
    fake_command(bin_dir, "scontrol", script)
    env = {**slurm_env, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    fail = "hydra.launcher.setup=['test $SLURM_ARRAY_TASK_ID != 1 || exit 3']"
    d, proc = sweep(tmp_path, env, "sweep", SEEDS, "hydra.launcher.models_per_task=1", fail)
    assert proc.returncode == 1
    assert "MaxArraySize (2): 3 jobs a task instead" in proc.stdout
    errors = [line for line in proc.stderr.splitlines() if "SLURM array task" in line]
    assert len(errors) == 1 and "_1 ended without a result (FAILED, exit code 3:0" in errors[0]
    assert "Traceback" not in proc.stderr
    with open(d / "summary.csv", newline="") as f:  # the finished task's jobs, summarised
        assert sorted(r["job"] for r in csv.DictReader(f) if r["status"] == "ok") == ["0", "1", "2"]
    assert not (d / "3").exists()
    assert (d / "tb" / "task0-group0" / "mean").is_dir() and not (d / "tb" / "group0").exists()
    first = [record(d, j)["slurm_job_id"] for j in range(3)]
    d, proc = sweep(tmp_path, env, "sweep", SEEDS, "hydra.launcher.models_per_task=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [record(d, j)["slurm_job_id"] for j in range(3)] == first  # kept, not retrained
    assert {record(d, j)["slurm_array_task_id"] for j in range(3, 6)} == {"1"}
    assert {record(d, j)["status"] for j in range(6)} == {"ok"}
    assert (d / "tb" / "task1-group0" / "mean").is_dir()


def test_fits_too_large_for_job_dirs_are_packed_in_each_task(slurm_env, tmp_path):
    d, proc = sweep(tmp_path, slurm_env, "packed", SEEDS, "hydra.launcher.models_per_task=3",
                    "hydra.launcher.job_dirs_up_to=2", "logger=tensorboard")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (d / "fits").iterdir()) == ["fit0", "fit3"]
    assert not (d / "0").exists()
    table = pq.read_table(d / "results.parquet").to_pydict()
    assert sorted(table["job"]) == list(range(6)) and set(table["status"]) == {"ok"}
    assert sorted(p.name for p in (d / "tb").iterdir()) == ["task0-fit0", "task1-fit3"]


def test_ddp_is_refused_in_one_line(slurm_env, tmp_path):
    d, proc = sweep(tmp_path, slurm_env, "ddp", "seed=1,2", "trainer=ddp", "logger=none")
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith("error: trainer.strategy=ddp cannot run under hydra/launcher=vectorized")
    )
    assert not (d / "0").exists()


def test_another_app_runs_one_slurm_job_a_job_as_under_submitit_slurm(slurm_env, tmp_path):
    (tmp_path / "app.py").write_text(
        "import os\nfrom pathlib import Path\nimport hydra\n"
        "from hydra.core.hydra_config import HydraConfig\n\n"
        '@hydra.main(version_base="1.3", config_path=None)\n'
        "def main(cfg):\n"
        '    out = Path(HydraConfig.get().runtime.output_dir) / "ran.txt"\n'
        "    out.write_text(f\"{cfg.x} {os.environ['SLURM_JOB_ID']}\")\n\n"
        "main()\n"
    )
    d = tmp_path / "app"
    proc = subprocess.run(
        [sys.executable, "app.py", "-m", "+x=1,2", "hydra/launcher=vectorized_slurm",
         "hydra.launcher.partition=debug", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.models_per_task=5", f"hydra.sweep.dir={d}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, **slurm_env},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    ran = [(d / j / "ran.txt").read_text().split() for j in ("0", "1")]
    assert [x for x, _ in ran] == ["1", "2"] and ran[0][1] != ran[1][1]
