"""`hydra/launcher=vectorized_slurm` without SLURM: the chunking, the site's array limit,
waiting for the tasks (with stand-ins for squeue and scontrol), what a task unpickles, and
the documented defaults. The sweeps on the one-node cluster: test_slurm_vectorized.py."""

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from hydra_plugins.xor_vectorized_slurm_launcher import array
from tests.conftest import doc_table


def fake_command(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/bash\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


SQUEUE = r"""
import json, sys
from pathlib import Path

here, args = Path(sys.argv[0]).parent, sys.argv[1:]
calls = here / "squeue.calls"
n = len(calls.read_text().splitlines()) if calls.exists() else 0
with calls.open("a") as f:
    f.write(" ".join(args) + "\n")
polls = json.loads((here / "squeue.json").read_text())
arrays = set(args[args.index("-j") + 1].split(",")) if "-j" in args else None
listed = [t for t in polls[min(n, len(polls) - 1)] if arrays is None or t.split("_")[0] in arrays]
if "-r" in args:  # one array task a line
    print("\n".join(listed))
else:  # an array's pending tasks on one line, their indices as ranges: 7_[0-2,5]
    indices = {}
    for t in listed:
        indices.setdefault(t.split("_")[0], []).append(int(t.split("_")[1]))
    for job, got in indices.items():
        got, runs = sorted(got), []
        for i in got:
            if runs and runs[-1][1] == i - 1:
                runs[-1][1] = i
            else:
                runs.append([i, i])
        print(f"{job}_[" + ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs) + "]")
"""


def fake_squeue(bin_dir: Path, polls: list[list[str]]) -> Path:
    """A stand-in for `squeue -h [-r] -o %i -j <arrays>`: at call k it lists the array
    tasks `polls[k]` (the last list once they run out) of the arrays asked for, one a line
    with `-r`, else, as squeue shows an array's pending tasks, collapsed (`7_[0-3]`). Its
    calls' arguments, one call a line, go to the file it returns."""
    (bin_dir / "squeue.json").write_text(json.dumps(polls))
    path = bin_dir / "squeue"
    path.write_text(f"#!{sys.executable}\n{SQUEUE}")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return bin_dir / "squeue.calls"


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


class FakeJob:
    """What `array.wait` reads of a submitit job: ended with `result`, or never `done`
    (then it has no result file, however long one waits for it)."""

    def __init__(self, job_id: str, result=None, raises=None, done=True):
        self.job_id, self._result, self._raises, self._done = job_id, result, raises, done
        self.paths = SimpleNamespace(stderr=Path(f"/logs/{job_id}_0_log.err"))

    def done(self):
        return self._done

    def result(self):
        if self._raises:
            raise self._raises
        return self._result

    def _get_outcome_and_result(self):
        from submitit.core.utils import UncompletedJobError

        if not self._done:
            raise UncompletedJobError(f"Job {self.job_id} has not produced any output")
        return ("error", None) if self._raises else ("success", self._result)

    def cancel(self, check=True):
        self.cancelled = True


def test_ctrl_c_while_waiting_cancels_the_tasks_still_running(monkeypatch):
    def interrupted(jobs):  # Ctrl-C while asking squeue
        raise KeyboardInterrupt

    monkeypatch.setattr(array, "in_queue", interrupted)
    jobs = [FakeJob("7_0", result={"returns": []}), FakeJob("7_1", done=False)]
    with pytest.raises(KeyboardInterrupt):
        array.wait(jobs, poll_s=0.01)
    assert [getattr(j, "cancelled", False) for j in jobs] == [False, True]


def test_waiting_gives_each_task_its_result_or_one_line_saying_why_not(tmp_path, monkeypatch):
    from submitit.core.utils import FailedJobError

    trace = "Traceback (most recent call last):\n  File ...\nValueError: boom"
    raised = FailedJobError(f"Job (task=0) failed during processing with trace:\n{'-' * 22}\n"
                            f"{trace}\n{'-' * 22}\nYou can check full logs ...")  # fmt: skip
    fake_squeue(tmp_path, [["7_8", "7_9"]])  # 7_2 has left the queue, 7_8 and 7_9 still run
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


def test_the_stand_in_for_squeue_collapses_an_arrays_tasks_unless_given_r(tmp_path):
    fake_squeue(tmp_path, [["7_0", "7_1", "7_2", "7_5", "8_4"]])
    squeue = [str(tmp_path / "squeue"), "-h", "-o", "%i", "-j", "7,8"]
    out = subprocess.run(squeue, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["7_[0-2,5]", "8_[4]"]
    out = subprocess.run([*squeue, "-r"], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["7_0", "7_1", "7_2", "7_5", "8_4"]


def test_tasks_still_queued_are_waited_for(tmp_path, monkeypatch):
    # squeue lists both tasks for the first 3 polls, then they are gone: 2 more polls to be
    # sure. Its tasks one a line only with -r: without, the array's line is "7_[0-1]".
    calls = fake_squeue(tmp_path, [["7_0", "7_1"]] * 3 + [[]])
    fake_command(tmp_path, "scontrol", "exit 1")  # purged: no state to report
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    outcomes = array.wait([FakeJob("7_0", done=False), FakeJob("7_1", done=False)], poll_s=0.01)
    assert [kind for kind, _ in outcomes] == ["failed", "failed"]
    assert all("state no longer known to SLURM" in why for _, why in outcomes)
    assert len(calls.read_text().splitlines()) == 5


def test_a_task_whose_result_shows_after_it_left_the_queue_is_done(tmp_path, monkeypatch):
    """On a shared file system the result file a task wrote may show here after squeue has
    dropped the task: it is read once it shows, as submitit's `job.result()` does. Tasks
    that left the queue together are waited for together."""
    from submitit.core import core, utils
    from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_squeue(bin_dir, [["7_0", "7_1"], []])  # running at the first poll, then gone
    fake_command(bin_dir, "sacct", "echo 'sacct: error: accounting storage is disabled' >&2\n"
                 "exit 1")  # fmt: skip
    fake_command(bin_dir, "scontrol", "echo 'JobId=8 JobState=COMPLETED Reason=None "
                 "ExitCode=0:0'")  # fmt: skip
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setattr(SlurmJob, "watcher", SlurmInfoWatcher(delay_s=600))  # this test's own
    jobs = [SlurmJob(tmp_path / "logs", f"7_{i}") for i in range(2)]
    jobs[0].paths.folder.mkdir()
    both_waiting = threading.Barrier(2, timeout=20)  # broken if they are waited for in turn
    shown = []

    def sleep(seconds: float) -> None:  # submitit waits for the files: now they show
        if not shown:
            both_waiting.wait()
        for i, job in enumerate(jobs):  # whole, as submitit writes it: under another name first
            written = f"{job.paths.result_pickle}.{threading.get_ident()}"
            utils.cloudpickle_dump(("success", {"returns": [(True, i)]}), written)
            os.replace(written, job.paths.result_pickle)
        shown.append(seconds)

    monkeypatch.setattr(core, "_time", SimpleNamespace(time=time.time, sleep=sleep))
    assert array.wait(jobs, poll_s=0.01) == [("ok", {"returns": [(True, i)]}) for i in range(2)]
    assert shown  # they were not there when the tasks left the queue


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
