"""The Optuna sweeper: what hydra-optuna-sweeper 1.3 accepts works the same; then pruning.

The tests sweep `sphere/app.py` (the release's example tasks: a formula, milliseconds a
trial), an app of their own, in this process; the launchers that start other processes and
`python -Werror` run as subprocesses and are marked slow.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import optuna
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution as Cat
from optuna.distributions import FloatDistribution as Float
from optuna.distributions import IntDistribution as Int
from optuna.trial import TrialState
from sphere.app import main as sphere  # this dir is on sys.path (no __init__.py: rootdir)

from hydra_plugins.xor_optuna_sweeper import space as sp
from hydra_plugins.xor_optuna_sweeper import sweeper as sweeper_module
from hydra_plugins.xor_optuna_sweeper.trials import TrialReporter

# `make test` runs them, `make test-fast` (the template's core) does not.
pytestmark = pytest.mark.slow

APP = Path(__file__).parent / "sphere"
QUIET = ["hydra/job_logging=none", "hydra/hydra_logging=none"]  # pytest keeps its logging


def run(d: Path, *overrides: str) -> None:
    """`sphere/app.py -m <overrides>` in this process, swept into `d`."""
    argv = ["app.py", "-m", f"hydra.sweep.dir={d}", *QUIET, *overrides]
    with mock.patch.object(sys, "argv", argv):
        sphere()


def study(d: Path, name: str = "sphere") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{d}/optuna.db")


def results(d: Path) -> dict:
    return yaml.safe_load((d / "optimization_results.yaml").read_text())


def expansion(expr: str) -> list:
    """The values Hydra's basic sweeper would run for a sweep expression."""
    return list(OverridesParser.create().parse_override(f"k={expr}").sweep_iterator())


@pytest.mark.parametrize(
    "expr, expected",
    [  # the release's table (its range includes the stop value; Hydra's, and ours, do not)
        ("choice(1,2)", Cat([1, 2])),
        ("choice(true, false)", Cat([True, False])),
        ("choice('hello', 'world')", Cat(["hello", "world"])),
        ("shuffle(range(1,3))", Cat([1, 2])),
        ("range(1,3)", Int(1, 2)),
        ("interval(1, 5)", Float(1, 5)),
        ("int(interval(1, 5))", Int(1, 5)),
        ("tag(log, interval(1, 5))", Float(1, 5, log=True)),
        ("tag(log, int(interval(1, 5)))", Int(1, 5, log=True)),
        ("range(0.5, 5.5, step=1)", Float(0.5, 4.5, step=1)),
        ("range(2, 33)", Int(2, 32)),
        ("range(0, 10, 3)", Int(0, 9, step=3)),
        ("range(10, 0, -3)", Int(1, 10, step=3)),
        ("range(0, 1, 0.1)", Float(0, 0.9, step=0.1)),
    ],
)
def test_sweep_expressions_become_the_releases_distributions(expr, expected):
    [override] = OverridesParser.create().parse_overrides([f"k={expr}"])
    actual = sp.distribution(override)
    if isinstance(expected, Cat):  # shuffle() reorders
        assert isinstance(actual, Cat) and set(actual.choices) == set(expected.choices)
        return
    assert actual == expected
    if "range" in expr:  # exactly the values Hydra's own range gives
        assert sorted(sp.grid({"k": actual})["k"]) == pytest.approx(sorted(expansion(expr)))


def test_deprecated_search_space_builds_the_releases_distributions_with_its_warnings():
    make = sweeper_module.XorOptunaSweeper
    args = dict(
        sampler=None,
        direction="minimize",
        storage=None,
        study_name="s",
        n_trials=1,
        n_jobs=1,
        max_failure_rate=0.0,
        custom_search_space=None,
        pruner=None,
    )
    search_space = {
        "a": {"type": "categorical", "choices": [1, 2, 3]},
        "b": {"type": "int", "low": 0, "high": 10, "step": 2},
        "c": {"type": "int", "low": 1, "high": 100, "log": True},
        "d": {"type": "float", "low": 0, "high": 10, "step": 2},
        "e": {"type": "float", "low": 1, "high": 100, "log": True},
    }
    with pytest.warns(UserWarning, match=r"`hydra.sweeper.search_space` is deprecated"):
        space, _ = make(search_space=OmegaConf.create(search_space), params=None, **args)._space([])
    assert space == {
        "a": Cat([1, 2, 3]),
        "b": Int(0, 10, step=2),
        "c": Int(1, 100, log=True),
        "d": Float(0, 10, step=2),
        "e": Float(1, 100, log=True),
    }
    with pytest.warns(UserWarning, match=r"Both hydra.sweeper.params and hydra.sweeper.search"):
        space, _ = make(
            search_space={"a": search_space["a"]}, params={"x": "range(1,3)"}, **args
        )._space([])
    assert space == {"x": Int(1, 2)}  # params win
    with warnings_as_errors():
        make(search_space=None, params={}, **args)._space([])


@contextlib.contextmanager
def warnings_as_errors() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


@pytest.mark.parametrize(
    "name, cls",
    [
        ("tpe", "TPESampler"),
        ("random", "RandomSampler"),
        ("cmaes", "CmaEsSampler"),
        ("nsgaii", "NSGAIISampler"),
        ("motpe", "TPESampler"),
        ("grid", "GridSampler"),
    ],
)
def test_every_sampler_the_release_ships_builds_without_a_warning(name, cls, monkeypatch):
    with initialize_config_dir(config_dir=str(APP), version_base="1.3"):
        cfg = compose(
            "sphere",
            [f"hydra/sweeper/sampler={name}", "hydra.sweeper.sampler.seed=3"],
            return_hydra_config=True,
        )
    sweeper = instantiate(cfg.hydra.sweeper)
    space = {"x": Int(-2, 2), "y": Cat([-5, 0, 5])}
    with warnings_as_errors():
        sampler = sweeper._sampler(space, done=0)
        sample = optuna.create_study(sampler=sampler)  # samples on Optuna 5 (cmaes: its package)
        sample.optimize(
            lambda t: t.suggest_int("x", -2, 2) ** 2 + t.suggest_categorical("y", [-5, 0, 5]) ** 2,
            n_trials=4,
        )
    assert type(sampler).__name__ == cls and len(sample.trials) == 4
    if name == "grid":  # the grid comes from params, and caps the budget
        assert sweeper.n_trials == 15
    built = []
    monkeypatch.setattr(sweeper_module, "instantiate", lambda c, **kw: built.append((c, kw)))
    sweeper._sampler(space, done=4)
    assert built[0][0]["seed"] == 3 + 4  # a resumed search is reseeded
    if name == "motpe":  # Optuna folded MOTPESampler into TPESampler
        assert built[0][0]["_target_"] == "optuna.samplers.TPESampler"
        assert built[0][0]["n_ei_candidates"] == 24 and "n_ehvi_candidates" not in built[0][0]


# hydra-optuna-sweeper 1.3.0's config.py, as released
RELEASE = {
    "direction": "minimize",
    "storage": None,
    "study_name": None,
    "n_trials": 20,
    "n_jobs": 2,
    "max_failure_rate": 0.0,
    "search_space": None,
    "params": None,
    "custom_search_space": None,
}
RELEASE_TPE = {
    "seed": None,
    "consider_prior": True,
    "prior_weight": 1.0,
    "consider_magic_clip": True,
    "consider_endpoints": False,
    "n_startup_trials": 10,
    "n_ei_candidates": 24,
    "multivariate": False,
    "warn_independent_sampling": True,
}


def test_defaults_are_the_releases_but_for_the_differences_the_readme_lists():
    with initialize_config_dir(config_dir=str(APP), version_base="1.3"):
        cfg = compose(None, ["hydra/sweeper=xor_optuna"], return_hydra_config=True)
    ours = OmegaConf.to_container(cfg.hydra.sweeper)
    assert {k: ours[k] for k in RELEASE} == RELEASE | {"study_name": "xor", "max_failure_rate": 1.0}
    deprecated = [
        "consider_prior",
        "prior_weight",
        "consider_magic_clip",
        "consider_endpoints",
        "warn_independent_sampling",
    ]  # null: Optuna 5's default, no warning
    tpe = {k: ours["sampler"][k] for k in RELEASE_TPE}
    assert tpe == RELEASE_TPE | dict.fromkeys(deprecated)
    assert ours["pruner"] == {"_target_": "optuna.pruners.NopPruner"}


def test_a_fixed_value_on_the_command_line_leaves_the_space(tmp_path):
    # The release's test_optuna_example: y=0 fixed though params sweeps y
    run(tmp_path, "hydra.sweeper.n_trials=4", "x=choice(0, 1, 2)", "y=0", "~z")
    trials = study(tmp_path).trials
    assert all(set(t.params) == {"x"} and t.user_attrs == {"y": "0"} for t in trials)
    assert all(t.value == t.params["x"] ** 2 for t in trials)  # the jobs ran with y=0, no z
    assert "y" not in results(tmp_path)["best_params"]


def test_a_sweep_on_the_command_line_replaces_a_plain_value_of_params(tmp_path):
    run(tmp_path, "hydra.sweeper.params.y=0", "y=choice(1, 2)", "hydra.sweeper.n_trials=3")
    assert {t.params["y"] for t in study(tmp_path).trials} <= {1, 2}


def test_hydra_sweeper_optuna_resolves_to_this_sweeper(tmp_path):
    run(
        tmp_path,
        "hydra/sweeper=optuna",
        "hydra.sweeper.study_name=sphere",
        "hydra.sweeper.n_trials=2",
    )
    assert len(study(tmp_path).trials) == 2 and results(tmp_path)["n_trials"] == 2


def test_the_grid_sampler_runs_each_point_of_the_grid_once(tmp_path):
    x, y = "choice(-1, 1)", "range(-1.0, 1.0, step=1)"
    run(tmp_path, "hydra/sweeper/sampler=grid", f"x={x}", f"y={y}", "~z")  # n_trials: 20
    points = sorted((t.params["x"], t.params["y"]) for t in study(tmp_path).trials)
    assert points == sorted(itertools.product(expansion(x), expansion(y)))
    assert results(tmp_path)["best_value"] == 1


def test_multi_objective_search_writes_the_pareto_front(tmp_path):
    run(
        tmp_path,
        "task=binh_korn",
        "hydra.sweeper.direction=[minimize,minimize]",
        "hydra/sweeper/sampler=nsgaii",
        "hydra.sweeper.n_trials=6",
    )
    points = [(t.params["x"], t.params["y"]) for t in study(tmp_path).trials]
    values = {p: (4 * p[0] ** 2 + 4 * p[1] ** 2, (p[0] - 5) ** 2 + (p[1] - 5) ** 2) for p in points}

    def dominated(v):
        return any(
            all(a <= b for a, b in zip(w, v, strict=True)) and w != v for w in values.values()
        )

    front = {(s["params"]["x"], s["params"]["y"]) for s in results(tmp_path)["solutions"]}
    assert front == {p for p, v in values.items() if not dominated(v)}
    for s in results(tmp_path)["solutions"]:
        assert tuple(s["values"]) == pytest.approx(values[(s["params"]["x"], s["params"]["y"])])


def test_custom_search_space_with_a_conditional_parameter(tmp_path):
    run(
        tmp_path,
        "hydra.sweeper.custom_search_space=sphere.app.configure",
        "hydra/sweeper/sampler=random",
        "hydra.sweeper.n_trials=6",
        "max_z_difference_from_x=0.3",
    )
    trials = study(tmp_path).trials
    for t in trials:
        p = t.params
        assert abs(p["z"] - p["x"]) <= 0.3
        assert ("+w" in p) == (p["y"] > 0)  # suggested only when y > 0
        assert t.value == pytest.approx(
            p["x"] ** 2 + p["y"] ** 2 + p["z"] ** 2 + p.get("+w", 0) ** 2
        )
    assert {t.params["y"] > 0 for t in trials} == {True, False}


@pytest.mark.parametrize(
    "overrides, trials_run, error",
    [  # n_jobs=2: a batch of two
        (
            ["error=true", "hydra.sweeper.max_failure_rate=0.5"],
            2,
            "RuntimeError: cfg.error is True",
        ),
        (["error=true", "hydra.sweeper.max_failure_rate=1.0"], 4, None),
        (["task=returns_nan", "hydra.sweeper.max_failure_rate=0.0"], 2, "returned nan"),
    ],
)
def test_max_failure_rate_stops_the_search_as_the_release_does(
    tmp_path, capsys, overrides, trials_run, error
):
    args = ["hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2", *overrides]
    if error:
        with pytest.raises(SystemExit):
            run(tmp_path, *args)
        assert error in capsys.readouterr().err
    else:
        run(tmp_path, *args)
    trials = study(tmp_path).trials
    assert len(trials) == trials_run and all(t.state == TrialState.FAIL for t in trials)


def test_a_resumed_search_is_reseeded_and_does_not_repeat_itself(tmp_path):
    space = ["hydra/sweeper/sampler=random", "x=interval(-5, 5)"]
    run(tmp_path / "a", *space, "hydra.sweeper.n_trials=2")
    run(tmp_path / "a", *space, "hydra.sweeper.n_trials=4")  # rerun with a larger budget
    xs = [t.params["x"] for t in study(tmp_path / "a").trials]
    assert len(xs) == 4 and len(set(xs)) == 4  # without reseeding, trials 2-3 replay 0-1
    run(tmp_path / "b", *space, "hydra.sweeper.n_trials=2")
    run(tmp_path / "b", *space, "hydra.sweeper.n_trials=4")
    assert [t.params["x"] for t in study(tmp_path / "b").trials] == xs  # still reproducible


def test_trials_left_running_are_failed_and_numbering_goes_on(tmp_path):
    optuna.create_study(study_name="sphere", storage=f"sqlite:///{tmp_path}/optuna.db").ask()
    run(tmp_path, "hydra.sweeper.n_trials=2")  # trial 0 was running when its sweep died
    assert [t.state for t in study(tmp_path).trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert (tmp_path / "1" / ".hydra").is_dir() and not (tmp_path / "0").exists()


def test_a_storage_given_as_a_target_config_reaches_the_jobs(tmp_path):
    journal = f"{tmp_path}/journal.log"
    backend = f"{{_target_:optuna.storages.journal.JournalFileBackend,file_path:'{journal}'}}"
    storage = f"{{_target_:optuna.storages.JournalStorage,log_storage:{backend}}}"
    run(
        tmp_path,
        f"hydra.sweeper.storage={storage}",
        "task=curve",
        "steps=4",
        "hydra/sweeper/pruner=median",
        "hydra.sweeper.pruner.n_startup_trials=1",
        "hydra.sweeper.n_trials=4",
    )
    store = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(journal))
    trials = optuna.load_study(study_name="sphere", storage=store).trials
    assert len(trials) == 4 and all(t.intermediate_values for t in trials)  # the jobs reported
    assert not (tmp_path / "optuna.db").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            [
                "hydra.sweeper.direction=[minimize,minimize]",
                "task=binh_korn",
                "hydra/sweeper/pruner=median",
            ],
            "Optuna cannot prune a multi-objective search",
        ),
        (["hydra.sweeper.direction=sideways"], "hydra.sweeper.direction=sideways: use minimize"),
        (["hydra.sweeper.max_failure_rate=2"], "max_failure_rate=2.0: use a number from 0.0"),
        (["hydra.sweeper.n_jobs=0"], "hydra.sweeper.n_jobs=0: use an integer >= 1"),
        (["hydra/sweeper/sampler=grid", "x=interval(0, 1)"], "the grid sampler needs a discrete"),
    ],
)
def test_what_the_search_cannot_run_is_refused_in_one_line(tmp_path, capsys, overrides, message):
    with pytest.raises(SystemExit) as e:
        run(tmp_path / "sweep", *overrides)
    assert e.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and message in line
    assert not (tmp_path / "sweep").exists()  # nothing written


def test_pruned_trials_stop_early_where_the_median_rule_says(tmp_path):
    run(
        tmp_path,
        "task=curve",
        "steps=6",
        "hydra/sweeper/pruner=median",
        "hydra.sweeper.pruner.n_startup_trials=2",
        "hydra.sweeper.n_trials=7",
    )
    trials = study(tmp_path).trials
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert pruned and len(pruned) + len(complete) == 7 == results(tmp_path)["n_trials"]
    assert results(tmp_path)["n_pruned"] == len(pruned)
    assert all(len(t.intermediate_values) == 6 for t in complete)
    for t in pruned:  # stopped at the first step where it was worse than the median
        earlier = [c for c in complete if c.number < t.number]  # complete when it ran
        assert len(earlier) >= 2  # n_startup_trials
        last = max(t.intermediate_values)
        for step, value in t.intermediate_values.items():
            median = statistics.median(c.intermediate_values[step] for c in earlier)
            assert (value > median) == (step == last)


def hydra_node(tmp_path: Path, pruner: dict | None, mode: RunMode = RunMode.MULTIRUN) -> object:
    """The `hydra` node of a job's config: trial 0 of study `s`, stored at <tmp_path>/optuna.db."""
    sweeper = {
        "_target_": sweeper_module.__name__ + ".XorOptunaSweeper",
        "storage": None,
        "study_name": "s",
        "pruner": pruner,
        "direction": "minimize",
    }
    return OmegaConf.create(
        {
            "mode": mode,
            "sweeper": sweeper,
            "job": {"num": 0},
            "runtime": {"cwd": str(tmp_path)},
            "sweep": {"dir": "."},
        }
    )


def test_a_trial_reporter_exists_only_for_a_trial_of_a_search_with_a_pruner(tmp_path):
    median = {"_target_": "optuna.pruners.MedianPruner"}
    assert TrialReporter.from_hydra(hydra_node(tmp_path, median)) is not None
    assert TrialReporter.from_hydra(hydra_node(tmp_path, None)) is None
    assert (
        TrialReporter.from_hydra(hydra_node(tmp_path, {"_target_": "optuna.pruners.NopPruner"}))
        is None
    )
    assert TrialReporter.from_hydra(hydra_node(tmp_path, median, RunMode.RUN)) is None


@pytest.mark.slow
def test_a_report_waits_for_another_process_holding_the_database(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(study_name="s", storage=storage).ask()  # trial 0, running
    reporter = TrialReporter.from_hydra(
        hydra_node(tmp_path, {"_target_": "optuna.pruners.MedianPruner"})
    )
    locked = threading.Event()

    def hold(seconds: float = 5.5) -> None:  # longer than SQLite's default 5 s timeout
        db = sqlite3.connect(tmp_path / "optuna.db", isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        locked.set()
        time.sleep(seconds)
        db.execute("COMMIT")

    holder = threading.Thread(target=hold)
    holder.start()
    locked.wait()
    start = time.monotonic()
    assert reporter.report(0.5, step=3) is False  # no "database is locked"
    assert time.monotonic() - start > 5
    holder.join()
    assert study(tmp_path, "s").trials[0].intermediate_values == {3: 0.5}


def script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -Werror sphere/app.py -m <args>`, as the release's tests run its examples."""
    cmd = [sys.executable, "-Werror", str(APP / "app.py"), "-m", *args]
    return subprocess.run(
        cmd,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"},
    )


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_pruning_reaches_trials_in_other_processes_under_werror(tmp_path, launcher):
    # joblib and submitit run each job in another process: it finds its trial by its number
    proc = script(
        f"hydra.sweep.dir={tmp_path}",
        f"hydra/launcher={launcher}",
        "task=curve",
        "hydra/sweeper/pruner=median",
        "hydra.sweeper.pruner.n_startup_trials=2",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=2",
        cwd=tmp_path,
    )
    assert proc.returncode == 0 and "Warning" not in proc.stderr, proc.stderr[-2000:]
    states = [t.state for t in study(tmp_path).trials]
    assert len(states) == 4 and TrialState.PRUNED in states and TrialState.FAIL not in states


@pytest.mark.slow
def test_a_plain_sweep_emits_no_warning_under_werror(tmp_path):
    proc = script(f"hydra.sweep.dir={tmp_path}", "hydra.sweeper.n_trials=2", cwd=tmp_path)
    assert proc.returncode == 0 and "Warning" not in proc.stderr, proc.stderr[-2000:]
    assert results(tmp_path)["n_trials"] == 2
