"""`hydra/launcher=vectorized_slurm`: the vectorised launcher's fits packed into SLURM array
tasks. The chunking, the array limit and the waiting without SLURM; the sweeps on the
one-node cluster the SLURM tests start (tests/slurm_cluster.sh), skipped where it cannot."""

import csv
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest
import yaml

from hydra_plugins.xor_vectorized_slurm_launcher import array
from tests.conftest import cli, doc_table

SEEDS = "seed=1,2,3,4,5,6"


def fake_command(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/bash\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_jobs_are_cut_in_order_into_chunks_numbered_from_the_first_job():
    jobs = [[f"seed={s}"] for s in range(7)]
    parts = array.chunks(jobs, 10, 3)
    assert [first for first, _ in parts] == [10, 13, 16]
    assert [len(o) for _, o in parts] == [3, 3, 1]
    assert [o for _, chunk in parts for o in chunk] == jobs


def test_jobs_a_task_are_raised_only_when_the_tasks_would_exceed_the_array_limit():
    assert array.task_size(6, 3, 1001) == 3  # 2 tasks
    assert array.task_size(6, 1, 2) == 3  # 6 tasks over a limit of 2: 3 jobs a task, 2 tasks
    assert array.task_size(10, 3, 3) == 4  # 4 tasks over 3: 4 jobs a task, 3 tasks
    assert array.task_size(6, 1, 6) == 1  # exactly at the limit: kept
    assert array.task_size(5, 4096, 1) == 4096


def test_the_array_limit_is_read_from_scontrol_else_slurms_default(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert array.max_array_size() == 1001  # no scontrol at all
    fake_command(tmp_path, "scontrol", "echo 'MaxArraySize            = 2'\necho 'MaxJobCount = 9'")
    assert array.max_array_size() == 2
    fake_command(tmp_path, "scontrol", "echo 'slurm_load_ctl_conf error' >&2; exit 1")
    assert array.max_array_size() == 1001


def test_a_task_uses_the_cpus_slurm_gave_it(monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    assert array.task_cpus() == 3
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    assert array.task_cpus() == os.cpu_count()


def test_the_documented_settings_are_the_launchers_defaults():
    from omegaconf import OmegaConf

    from hydra_plugins.xor_vectorized_slurm_launcher.config import VectorizedSlurmLauncherConf

    conf = OmegaConf.structured(VectorizedSlurmLauncherConf)
    rows = doc_table("docs/distributed.md", "### Vectorised fits across machines")
    documented = {row[0].strip("`"): yaml.safe_load(row[1].strip("`")) for row in rows}
    assert len(documented) == 9
    for key, value in documented.items():
        assert OmegaConf.to_container(conf)[key] == value, key


def test_settings_it_cannot_run_are_refused_in_one_line():
    sbatch = array.unsupported({}, 4096) is None or "sbatch" in array.unsupported({}, 4096)
    assert sbatch
    assert "at least 1" in array.unsupported({}, 0)
    assert "tasks_per_node" in array.unsupported({"tasks_per_node": 2}, 3)


def test_a_task_names_its_fits_summaries_after_itself(monkeypatch):
    from xor_lightning.stacked import run, tensorboard

    written = []
    monkeypatch.setattr(tensorboard, "write_summary", lambda d, name, r: written.append(name))
    with array.summaries_named("task3-"):
        run.tensorboard.write_summary(Path("s"), "group0", None)  # as run.py calls it
    run.tensorboard.write_summary(Path("s"), "group0", None)
    assert written == ["task3-group0", "group0"]
    assert run.tensorboard is tensorboard and not hasattr(run, "write_summary")


class FakeJob:
    """What `array.wait` reads of a submitit job: ended with `result`, or never `done`."""

    def __init__(self, job_id: str, result=None, raises=None, done=True):
        self.job_id, self._result, self._raises, self._done = job_id, result, raises, done
        self.paths = SimpleNamespace(stderr=Path(f"/logs/{job_id}_0_log.err"))

    def done(self):
        return self._done

    def result(self):
        if self._raises:
            raise self._raises
        return self._result


def test_waiting_gives_each_task_its_result_or_one_line_saying_why_not(tmp_path, monkeypatch):
    from submitit.core.utils import FailedJobError

    trace = "Traceback (most recent call last):\n  File ...\nValueError: boom"
    raised = FailedJobError(f"Job (task=0) failed during processing with trace:\n{'-' * 22}\n"
                            f"{trace}\n{'-' * 22}\nYou can check full logs ...")  # fmt: skip
    fake_command(tmp_path, "squeue", "echo 7_9")  # 7_2 has left the queue, 7_9 still runs
    ended = "echo 'JobId=9 JobState=CANCELLED Reason=None ExitCode=0:15'"
    fake_command(tmp_path, "scontrol", ended)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    jobs = [FakeJob("7_0", result={"returns": []}), FakeJob("7_1", raises=raised),
            FakeJob("7_2", done=False)]  # fmt: skip
    outcomes = array.wait(jobs, poll_s=0.01)
    assert outcomes[0] == ("ok", {"returns": []})
    assert outcomes[1] == ("failed", "SLURM array task 7_1 failed: ValueError: boom; "
                           "log: /logs/7_1_0_log.err")  # fmt: skip
    assert outcomes[2] == ("failed", "SLURM array task 7_2 ended without a result (CANCELLED, "
                           "exit code 0:15); log: /logs/7_2_0_log.err")  # fmt: skip


def test_a_task_still_queued_is_waited_for(tmp_path, monkeypatch):
    # squeue lists the task for the first 3 polls, then it is gone: 2 more polls to be sure
    counter = tmp_path / "calls"
    listed = f"echo x >> {counter}; [ $(wc -l < {counter}) -le 3 ] && echo 7_0 || true"
    fake_command(tmp_path, "squeue", listed)
    fake_command(tmp_path, "scontrol", "exit 1")  # purged: no state to report
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    [(kind, why)] = array.wait([FakeJob("7_0", done=False)], poll_s=0.01)
    assert kind == "failed" and "state no longer known to SLURM" in why
    assert len(counter.read_text().split()) == 5


def test_a_queue_that_no_longer_knows_the_array_holds_none_of_its_tasks(tmp_path, monkeypatch):
    purged = "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1"
    fake_command(tmp_path, "squeue", purged)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    assert array.in_queue([FakeJob("7_0")]) == set()
    fake_command(tmp_path, "squeue", "echo 'Unable to contact slurm controller' >&2; exit 1")
    assert array.in_queue([FakeJob("7_0")]) is None  # cannot say: keep waiting


def test_hydra_imports_the_plugin_without_torch_lightning_or_submitit():
    plugin = "hydra_plugins.xor_vectorized_slurm_launcher"
    code = (
        f"import sys, {plugin}.config, {plugin}.launcher\n"
        "print(sorted(m for m in ('torch', 'lightning', 'submitit') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


class Loader:
    """A stand-in for Hydra's config loader (picklable, as Hydra's is)."""

    def __init__(self, config_search_path: str) -> None:
        self.config_search_path = config_search_path


def test_each_task_gets_a_fast_config_loader_built_anew():
    import cloudpickle
    from hydra.types import HydraContext

    from hydra_plugins.xor_vectorized_launcher.compose import FastSweepConfigLoader
    from hydra_plugins.xor_vectorized_slurm_launcher.launcher import VectorizedSlurmLauncher

    launcher = VectorizedSlurmLauncher(3, 3, 16, 10, 0, None, submitit_folder="x")
    pickled = Loader("conf")
    launcher.hydra_context = HydraContext(FastSweepConfigLoader(pickled), callbacks=None)
    task = cloudpickle.loads(cloudpickle.dumps(launcher.run_task)).__self__  # as submitit does
    unpickled = task.hydra_context.config_loader
    assert type(unpickled) is Loader  # the fast one cannot be unpickled: Hydra's own instead
    task._task_loader()  # what run_task does once Hydra's state is restored
    loader = task.hydra_context.config_loader
    assert isinstance(loader, FastSweepConfigLoader) and isinstance(loader.inner, Loader)
    assert loader.inner.config_search_path == "conf" and loader.inner is not unpickled
    assert launcher.hydra_context.config_loader.inner is pickled  # the launcher's own: kept


# On the one-node cluster: each sweep is a real SLURM array, its tasks running the project.
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_fits_too_large_for_job_dirs_are_packed_in_each_task(slurm_env, tmp_path):
    d, proc = sweep(tmp_path, slurm_env, "packed", SEEDS, "hydra.launcher.models_per_task=3",
                    "hydra.launcher.job_dirs_up_to=2", "logger=tensorboard")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (d / "fits").iterdir()) == ["fit0", "fit3"]
    assert not (d / "0").exists()
    table = pq.read_table(d / "results.parquet").to_pydict()
    assert sorted(table["job"]) == list(range(6)) and set(table["status"]) == {"ok"}
    assert sorted(p.name for p in (d / "tb").iterdir()) == ["task0-fit0", "task1-fit3"]


@pytest.mark.slow
def test_ddp_is_refused_in_one_line(slurm_env, tmp_path):
    d, proc = sweep(tmp_path, slurm_env, "ddp", "seed=1,2", "trainer=ddp", "logger=none")
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith("error: trainer.strategy=ddp cannot run under hydra/launcher=vectorized")
    )
    assert not (d / "0").exists()


@pytest.mark.slow
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
