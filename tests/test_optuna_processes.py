"""Many sweeper processes on one Optuna study, and a search resumed after Ctrl-C or a kill.

The processes run an app of the test's own (written to the test's dir: a formula whose
outcome each trial's parameters decide, so the expected state of every trial is known
without the sweeper), started as a user starts them: `python app.py -m ...`, each with its
own sweep dir, all on one storage. The resume tests interrupt real training searches.
"""

from __future__ import annotations

import errno
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hydra_plugins.xor_optuna_sweeper.shared import (
    OWNER,
    PROCESS,
    SWEEP_DIR,
    Process,
    resume_overrides,
)
from hydra_plugins.xor_optuna_sweeper.sweeper import PROCESS_STRIDE
from tests.conftest import load

# Tests of a capability around the core: `make test` runs them, `make test-fast` does not.
pytestmark = pytest.mark.slow

APP = """
import time
import hydra
import optuna

@hydra.main(version_base="1.3", config_path=".", config_name="cfg")
def main(cfg):
    time.sleep(cfg.sleep)  # trials of several processes overlap
    if cfg.x < -3:
        raise RuntimeError("x < -3")  # a failed trial
    if cfg.x > 3:
        raise optuna.TrialPruned()  # a pruned trial
    return cfg.x ** 2 + cfg.y

if __name__ == "__main__":
    main()
"""
CFG = """
defaults:
  - override hydra/sweeper: xor_optuna
  - _self_
hydra:
  sweeper:
    sampler: {seed: 7}
    study_name: shared
    n_trials: 12
    n_jobs: 1
    params: {x: "interval(-5, 5)", y: "interval(0, 1)"}
x: 0.0
y: 0.0
sleep: 0.3
"""
QUIET = ["hydra/job_logging=none", "hydra/hydra_logging=none"]


def write_app(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "app.py").write_text(APP)
    (d / "cfg.yaml").write_text(CFG)
    return d / "app.py"


def start(app: Path, sweep_dir: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, str(app), "-m", f"hydra.sweep.dir={sweep_dir}", *QUIET, *args]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.Popen(
        cmd, cwd=app.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def storage_of(url: str) -> optuna.storages.BaseStorage:
    if url.startswith("journal:"):
        backend = optuna.storages.journal.JournalFileBackend(url.removeprefix("journal:"))
        return optuna.storages.JournalStorage(backend)
    return optuna.storages.RDBStorage(url)


def processes(store: optuna.storages.BaseStorage, name: str) -> dict[str, dict]:
    """The sweeper processes registered in a study: token -> entry."""
    attrs = store.get_study_system_attrs(store.get_study_id_from_name(name))
    return {k.removeprefix(PROCESS): v for k, v in attrs.items() if k.startswith(PROCESS)}


def expected_state(t: optuna.trial.FrozenTrial) -> TrialState:
    x = t.params["x"]
    return TrialState.FAIL if x < -3 else TrialState.PRUNED if x > 3 else TrialState.COMPLETE


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_four_processes_share_one_study(tmp_path, kind):
    app = write_app(tmp_path)
    url = f"sqlite:///{tmp_path}/x.db" if kind == "sqlite" else f"journal:{tmp_path}/x.log"
    procs = [start(app, tmp_path / f"s{i}", f"hydra.sweeper.storage={url}") for i in range(4)]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0 and "Traceback" not in err, err[-3000:]
    store = storage_of(url)
    study = optuna.load_study(study_name="shared", storage=store)
    trials = study.trials
    assert [t.number for t in trials] == list(range(12))  # the study's budget, exactly
    for t in trials:  # none lost, left running or told twice: each as its parameters say
        assert t.state == expected_state(t), (t.number, t.params, t.state)
        if t.state == TrialState.COMPLETE:
            assert t.value == pytest.approx(t.params["x"] ** 2 + t.params["y"])
    # every process has an index of its own, and its first trial parameters of its own
    entries = processes(store, "shared")
    assert sorted(e["index"] for e in entries.values()) == [0, 1, 2, 3]
    assert all(e.get("ended") for e in entries.values())
    firsts = {}
    for t in trials:
        firsts.setdefault(t.system_attrs[OWNER], t)
    assert len(firsts) >= 2
    assert len({tuple(sorted(t.params.items())) for t in firsts.values()}) == len(firsts)
    # each process's first suggestion is what a search alone seeded with
    # seed + 1,000,003 x its index suggests first (TPE starts with independent samples)
    for owner, t in firsts.items():
        index = entries[owner]["index"]
        alone = optuna.samplers.TPESampler(seed=7 + PROCESS_STRIDE * index)
        first = optuna.create_study(sampler=alone).ask(t.distributions).params
        assert first == t.params
        # it ran in its process's own sweep dir, as job <trial number>
        assert (Path(t.system_attrs[SWEEP_DIR]) / str(t.number) / ".hydra").is_dir()
    assert {Path(t.system_attrs[SWEEP_DIR]).name for t in firsts.values()} <= {
        f"s{i}" for i in range(4)
    }
    # n_trials counts the study: a process started once it is full runs nothing
    late = start(app, tmp_path / "late", f"hydra.sweeper.storage={url}")
    _, err = late.communicate(timeout=120)
    assert late.returncode == 0 and len(study.trials) == 12, err[-3000:]
    assert not [p for p in (tmp_path / "late").iterdir() if p.is_dir()]


def test_a_running_trial_no_sweeper_asked_for_is_failed_and_asked_again(tmp_path):
    app, url = write_app(tmp_path), f"sqlite:///{tmp_path}/x.db"
    other = optuna.create_study(study_name="shared", storage=url).ask()  # another program's
    params = {"x": other.suggest_float("x", -5, 5), "y": other.suggest_float("y", 0, 1)}
    p = start(app, tmp_path / "s", f"hydra.sweeper.storage={url}", "hydra.sweeper.n_trials=3")
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err[-3000:]
    trials = optuna.load_study(study_name="shared", storage=url).trials
    assert [t.state for t in trials[:1]] == [TrialState.FAIL] and len(trials) == 3
    assert trials[1].params == params and trials[1].state == expected_state(trials[1])


def test_n_trials_counts_failed_and_pruned_trials_as_optunas_callback_with_states_none(
    tmp_path,
):
    app, url = write_app(tmp_path), f"sqlite:///{tmp_path}/x.db"
    for x, n in (("4", 2), ("-4", 3)):  # x > 3: every trial pruned; x < -3: every one failed
        p = start(app, tmp_path / "s", f"hydra.sweeper.storage={url}", f"x={x}",
                  f"hydra.sweeper.n_trials={n}", "sleep=0")  # fmt: skip
        try:
            _, err = p.communicate(timeout=120)
        finally:
            p.kill()
        assert p.returncode == 0, err[-3000:]
    trials = optuna.load_study(study_name="shared", storage=url).trials
    assert [t.state for t in trials] == [TrialState.PRUNED] * 2 + [TrialState.FAIL]
    # what the page says of Optuna's MaxTrialsCallback: by default, complete trials only
    states = inspect.signature(optuna.study.MaxTrialsCallback).parameters["states"].default
    assert tuple(states) == (TrialState.COMPLETE,)


def test_a_trial_continues_from_last_ckpt_only_where_its_dir_holds_the_same_job(tmp_path):
    from hydra import compose, initialize_config_dir

    from xor_lightning.config import CONF_DIR

    def overrides(*extra: str) -> list[str]:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose("train", [f"hydra.sweep.dir={tmp_path}", *extra], True)
        return resume_overrides(cfg, 5, tmp_path, ["model.hidden=4", "hydra.sweeper.x=1"])

    job = tmp_path / "5"
    assert overrides() == []  # never started
    (job / "checkpoints").mkdir(parents=True)
    (job / "checkpoints" / "last.ckpt").write_bytes(b"")
    (job / ".hydra").mkdir()
    (job / ".hydra" / "overrides.yaml").write_text("- model.hidden=4\n")
    assert overrides() == [f"ckpt_path={job / 'checkpoints' / 'last.ckpt'}"]
    assert overrides("hydra/launcher=vectorized") == []  # it resumes by itself
    (job / ".hydra" / "overrides.yaml").write_text("- model.hidden=8\n")  # another job's
    assert overrides() == []


def wait_for_running(url: str, name: str = "shared", timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            study = optuna.load_study(study_name=name, storage=storage_of(url))
            if study.get_trials(states=(TrialState.RUNNING,)):
                return
        except KeyError:  # not created yet
            pass
        time.sleep(0.2)
    raise AssertionError("no trial started")


def test_only_a_gone_process_s_trials_are_taken_over(tmp_path):
    app, url = write_app(tmp_path), f"sqlite:///{tmp_path}/x.db"
    args = [f"hydra.sweeper.storage={url}", "hydra.sweeper.n_trials=3"]
    a = start(app, tmp_path / "a", *args, "sleep=60")
    try:
        _take_over(app, url, args, a, tmp_path)
    finally:
        a.kill()
        a.wait()


def _take_over(app: Path, url: str, args: list[str], a: subprocess.Popen, tmp_path: Path) -> None:
    wait_for_running(url)
    # b runs beside a live a: it leaves a's trial alone and fills the budget
    b = start(app, tmp_path / "b", *args, "sleep=0")
    _, err = b.communicate(timeout=120)
    assert b.returncode == 0 and "Traceback" not in err, err[-3000:]
    store = storage_of(url)
    running = optuna.load_study(study_name="shared", storage=store).trials[0]
    assert running.state == TrialState.RUNNING
    owner = processes(store, "shared")[running.system_attrs[OWNER]]
    assert owner["pid"] == a.pid and not (tmp_path / "b" / "0").exists()
    a.send_signal(signal.SIGKILL)  # gone without a word
    a.wait()
    c = start(app, tmp_path / "c", *args, "sleep=0")
    _, err = c.communicate(timeout=120)
    assert c.returncode == 0 and "Traceback" not in err, err[-3000:]
    trials = optuna.load_study(study_name="shared", storage=store).trials
    assert len(trials) == 3 and all(t.state == expected_state(t) for t in trials)
    assert trials[0].params == running.params  # its own number and parameters
    assert (tmp_path / "a" / "0" / ".hydra").is_dir() and not (tmp_path / "c" / "0").exists()


def dead_pid() -> int:
    """The pid of a process that has ended (and was not reaped into reuse since)."""
    out = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return int(out.stdout)


def test_a_process_on_another_host_is_gone_when_its_heartbeat_is_older_than_grace(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/x.db")
    store = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/x.db")
    me = Process(study, store, interval=10, grace=30)
    now = time.time()
    elsewhere = {"host": socket.gethostname() + "-other", "pid": os.getpid(), "index": 1}
    assert me.alive({**elsewhere, "beat": now - 29}, now)
    assert not me.alive({**elsewhere, "beat": now - 31}, now)
    assert not me.alive({**elsewhere, "beat": now, "ended": True}, now)
    here = {**me.entry, "index": 0, "beat": now - 1000}  # this host: the pid decides
    assert me.alive(here, now)
    assert not me.alive({**here, "pid": dead_pid(), "started": None}, now)
    assert not me.alive({**here, "started": "0"}, now)  # the pid reused by another process


@pytest.mark.parametrize(
    "elsewhere",
    [
        {"pidns": "pid:[1]"},  # a container sharing the host's name (--uts=host, hostNetwork)
        {"boot": "00000000-0000-0000-0000-000000000000"},  # this host before a reboot
        {"boot": None, "pidns": None},  # an entry written before either was recorded
    ],
)
def test_a_process_with_this_host_name_in_another_pid_namespace_is_judged_by_heartbeat(
    tmp_path, elsewhere
):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/x.db")
    store = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/x.db")
    me = Process(study, store, interval=10, grace=30)
    now = time.time()
    entry = {**me.entry, "pid": dead_pid(), "started": None, "index": 1, **elsewhere}
    entry = {k: v for k, v in entry.items() if v is not None}
    assert entry["host"] == socket.gethostname()
    assert me.alive({**entry, "beat": now - 29}, now)  # its pid means nothing here
    assert not me.alive({**entry, "beat": now - 31}, now)
    assert not me.alive({**me.entry, "pid": entry["pid"], "beat": now}, now)  # here: by pid


# As xor-train runs it: the sweep dir made and locked (`.lock`) before the sweeper starts.
LOCKED = "+hydra.callbacks.lock._target_=xor_lightning.lock.RunDirLock"


def refused(tmp_path: Path, *args: str) -> str:
    """The one line a search started with `args` is refused with, exit status 2; its sweep
    dir, made before the sweeper started, is not left behind."""
    p = start(write_app(tmp_path), tmp_path / "s", LOCKED, *args)
    _, err = p.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert not (tmp_path / "s").exists()  # nothing written, not even .lock
    return lines[0]


@pytest.mark.parametrize(
    "override, message",
    [
        ("hydra.sweeper.storage=nosuchdb://x", "storage=nosuchdb://x: NoSuchModuleError: "),
        ("hydra.sweeper.process_index=-1", "process_index=-1: use an integer >= 0"),
        ("hydra.sweeper.grace_period=1", "use 0 < heartbeat_interval < grace_period"),
    ],
)
def test_bad_settings_are_refused_in_one_line(tmp_path, override, message):
    assert message in refused(tmp_path, override)


def test_a_storage_file_that_is_no_database_is_refused_and_nothing_made_is_left(tmp_path):
    db = tmp_path / "notes.db"
    db.write_text("not a database\n" * 100)
    line = refused(tmp_path, f"hydra.sweeper.storage=sqlite:///{db}")
    assert (
        f"sqlite:///{db}: DatabaseError: (sqlite3.DatabaseError) file is not a database (use "
        in line
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.py", "cfg.yaml", "notes.db"]
    assert db.read_text() == "not a database\n" * 100


def denied_dir() -> tuple[Path, str]:
    """A dir in which this user, root included, may not make a file (/sys), and how the
    system says so when it is not plainly "permission denied" (a read-only mount)."""
    probe = Path("/sys") / f"xor-{os.getpid()}.probe"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_WRONLY))
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return probe.parent, "" if e.errno == errno.EACCES else f" ({e.strerror})"
        raise
    probe.unlink()
    pytest.skip("/sys takes new files on this machine")


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_storage_this_user_may_not_write_is_refused_as_a_permission_problem(tmp_path, kind):
    where, why = denied_dir()
    file = where / "xor.db"
    url = f"sqlite:///{file}" if kind == "sqlite" else f"journal:{file}"
    line = refused(tmp_path, f"hydra.sweeper.storage={url}")
    lock = f"{file}.sweeper-lock, the study's lock file beside the storage file{why}"
    assert line == (
        f"error: hydra.sweeper.storage={url}: permission denied: cannot write {lock}; use a "
        "storage this user can write (a file in a directory it may write to, or a database server)"
    )


def test_a_read_only_sqlite_database_is_refused_as_a_permission_problem(tmp_path):
    db = tmp_path / "ro.db"
    optuna.create_study(study_name="shared", storage=f"sqlite:///{db}")  # the study's own
    url = f"sqlite:///file:{db}?mode=ro&uri=true"  # a file this user may read, not write
    line = refused(tmp_path, f"hydra.sweeper.storage='{url}'")
    assert f"permission denied: cannot write file:{db} (attempt to write a readonly" in line


def train_search(d: Path, log: Path, *args: str) -> subprocess.Popen:
    """`xor-train hparams_search=xor_optuna` as a user starts it, its output in `log`."""
    cmd = [sys.executable, "-m", "xor_lightning.train", "hparams_search=xor_optuna",
           f"hydra.sweep.dir={d}", "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=3",
           "logger=none", *args]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    with open(log, "w") as out:
        return subprocess.Popen(cmd, cwd=d.parent, stdout=out, stderr=subprocess.STDOUT, env=env)


def steps(d: Path) -> dict[str, int]:
    return {p.parts[-3]: load(p)["global_step"] for p in d.glob("*/checkpoints/last.ckpt")}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "vectorized"])
def test_a_search_stopped_by_ctrl_c_resumes_its_trials_in_their_own_dirs(tmp_path, launcher):
    d, epochs = tmp_path / "opt", 300 if launcher == "basic" else 400
    args = [f"trainer.max_epochs={epochs}"]
    if launcher == "vectorized":  # its jobs' last.ckpt written every 10 epochs, as a run's
        args += ["hydra/launcher=vectorized", "hydra.launcher.last_every_n_epochs=10"]
    first = train_search(d, tmp_path / "first.log", *args)
    try:  # Ctrl-C once the batch trains: job 0 under the basic launcher, the fit's 3 jobs
        # under the vectorised one
        end = time.monotonic() + 120
        while time.monotonic() < end and first.poll() is None:
            if (d / "0" / "checkpoints" / "last.ckpt").is_file():
                break
            time.sleep(0.1)
        first.send_signal(signal.SIGINT)
        assert first.wait(timeout=120) == 130, (tmp_path / "first.log").read_text()[-3000:]
    finally:
        first.kill()
    study = optuna.load_study(study_name="xor", storage=f"sqlite:///{d}/optuna.db")
    before = study.trials
    assert [t.state for t in before] == [TrialState.RUNNING] * 3
    stopped = steps(d)
    assert stopped and all(0 < s < epochs for s in stopped.values())  # one batch an epoch
    again = train_search(d, tmp_path / "again.log", *args)
    assert again.wait(timeout=400) == 0, (tmp_path / "again.log").read_text()[-3000:]
    after = optuna.load_study(study_name="xor", storage=f"sqlite:///{d}/optuna.db").trials
    assert [t.state for t in after] == [TrialState.COMPLETE] * 3  # n_trials: 3 in all
    assert [t.params for t in after] == [t.params for t in before]
    assert sorted(p.name for p in d.iterdir() if p.is_dir()) == ["0", "1", "2"]  # no new dir
    assert steps(d) == dict.fromkeys(["0", "1", "2"], epochs)
    for job, step in stopped.items():  # continued from its last.ckpt, not trained afresh
        if launcher == "basic":
            overrides = json.loads((d / job / "job.json").read_text())["overrides"]
            assert f"ckpt_path={d / job / 'checkpoints' / 'last.ckpt'}" in overrides
        else:  # the resumed fit's log starts after the step it stopped at
            rerun = (d / job / "train.log").read_text().split("trained in one fit")[2]
            assert "epoch    0 " not in rerun and step < epochs


@pytest.mark.parametrize("space", [[], ["x=choice(1, 2)"]])
def test_an_ended_process_s_trial_is_resumed_and_a_changed_space_refused(tmp_path, space):
    app, url = write_app(tmp_path), f"sqlite:///{tmp_path}/x.db"
    store = optuna.storages.RDBStorage(url)
    study = optuna.create_study(study_name="shared", storage=store)
    stopped = study.ask({"x": optuna.distributions.FloatDistribution(-3, 3)})
    gone = {"host": socket.gethostname(), "pid": os.getpid(), "index": 0, "beat": 0}
    store.set_study_system_attr(study._study_id, PROCESS + "t0", {**gone, "ended": True})
    store.set_trial_system_attr(stopped._trial_id, OWNER, "t0")  # as a Ctrl-C'd sweep leaves it
    store.set_trial_system_attr(stopped._trial_id, SWEEP_DIR, str(tmp_path / "s"))
    p = start(app, tmp_path / "s", f"hydra.sweeper.storage={url}", "hydra.sweeper.n_trials=2",
              *space)  # fmt: skip
    _, err = p.communicate(timeout=120)
    if space:  # Optuna keeps one kind of distribution per parameter in a study
        [line] = err.strip().splitlines()
        assert p.returncode == 2 and line.startswith("error: the search space (x, y) does not fit")
        assert "use another hydra.sweeper.study_name" in line, err
        assert not (tmp_path / "s").exists()  # its sweep dir, made for nothing, is not left
        [left] = optuna.load_study(study_name="shared", storage=url).trials  # no trial asked
        assert left.state == TrialState.RUNNING and list(processes(store, "shared")) == ["t0"]
        return
    assert p.returncode == 0, err[-3000:]
    trials = optuna.load_study(study_name="shared", storage=url).trials
    assert len(trials) == 2 and trials[0].params["x"] == stopped.params["x"]
    assert trials[0].state == TrialState.COMPLETE and (tmp_path / "s" / "0").is_dir()
