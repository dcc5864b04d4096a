"""Composition at sweep scale: the launcher prepares a shape's jobs from one composition,
and each job's config stays exactly Hydra's.

Every job the launcher prepares from its shape's template is compared, field for field
(types included), with the same job prepared from a composition of its own, and that with
Hydra's own composition. The sweeper's check and the checks on plain values:
tests/test_sweeper_check.py, which uses `sweeper_for` from here.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any

import pytest
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

from hydra_plugins.xor_sweeper.shapes import shape_of
from hydra_plugins.xor_sweeper.sweeper import XorBasicSweeper
from hydra_plugins.xor_vectorized_launcher.prepare import Preparation, workers_for
from xor_lightning.config import CONF_DIR

# Tests of a capability around the core: `make test` runs them, `make test-fast` does not.
pytestmark = pytest.mark.slow

# A config of the test's own: interpolations that read swept values, the job's own Hydra
# fields, a whole group, a resolver OmegaConf must run, an escape, a relative reference, a list.
EXTRA_PATHS = r"""
foo: ${seed}
bar: run-${seed}-${data.noise}-${hydra.job.num}
rel: ${..seed}
tail: ${paths.bar}/x
sel: ${oc.select:seed,0}
node: ${data}
esc: \${seed}
job: ${hydra:job.override_dirname}
sub: ${hydra.sweep.subdir}
pair: [1, 2]
"""


@dataclass
class TypedPaths:  # a typed node among the values (n) and among the interpolations (label)
    output_dir: str = "${hydra:runtime.output_dir}"
    ckpt_dir: str = "${paths.output_dir}/checkpoints"
    n: int = 1
    label: str = "${seed}"


ConfigStore.instance().store(group="paths", name="test_typed", node=TypedPaths)


@pytest.fixture(autouse=True)
def _leave_hydra_as_found():
    """`sweeper_for` initialises Hydra as its main does; other tests initialise their own."""
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    yield
    GlobalHydra.instance().clear()


@pytest.fixture(scope="module")
def own_conf(tmp_path_factory: pytest.TempPathFactory) -> str:
    conf = tmp_path_factory.mktemp("conf") / "conf"
    shutil.copytree(CONF_DIR, conf)
    with open(conf / "paths" / "default.yaml", "a") as f:
        f.write(EXTRA_PATHS)
    return str(conf)


def sweeper_for(args: list[str], conf: str = CONF_DIR, kind: type = XorBasicSweeper) -> Any:
    """The sweeper `xor-train -m <args> hydra/launcher=vectorized hydra/sweeper=xor_basic`
    instantiates, set up; with
    `kind=BasicSweeper`, Hydra's own sweeper, launcher and config loader instead."""
    from hydra import initialize_config_dir
    from hydra._internal.callbacks import Callbacks
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.plugins import Plugins
    from hydra.core.utils import setup_globals
    from hydra.types import HydraContext, RunMode

    from xor_lightning import train

    setup_globals()
    GlobalHydra.instance().clear()
    initialize_config_dir(config_dir=conf, version_base="1.3", job_name="train")
    hydra = GlobalHydra.instance().hydra
    ours = ["hydra/launcher=vectorized", "hydra/sweeper=xor_basic", "hydra.launcher.workers=1"]
    overrides = [*(ours if kind is XorBasicSweeper else []), *args]
    cfg = hydra.compose_config("train", overrides, run_mode=RunMode.MULTIRUN)
    HydraConfig.instance().set_config(cfg)
    str(cfg.hydra.sweep.dir)  # resolved (its time cached) as BasicSweeper.sweep does
    context = HydraContext(config_loader=hydra.config_loader, callbacks=Callbacks(cfg))
    sweeper = Plugins.instance().instantiate_sweeper(
        config=cfg, hydra_context=context, task_function=train.main.__wrapped__
    )
    assert type(sweeper).__name__ == kind.__name__  # (Hydra runs plugin modules anew)
    return sweeper


def batch_of(sweeper: Any) -> list[list[str]]:
    task = OmegaConf.to_container(sweeper.config.hydra.overrides.task)
    return sweeper.split_arguments(OverridesParser.create().parse_overrides(task), None)[0]


FIELDS = ("num", "overrides", "dir", "resolved", "unresolved", "digest", "hydra_files",
          "study_name", "error", "problem", "key", "fatal")  # fmt: skip


def prepared(args: list[str], conf: str = CONF_DIR) -> tuple[Preparation, list[Any], list[Any]]:
    """The launch's preparation, the batch's jobs as it prepares them, each prepared in full."""
    sweeper = sweeper_for(args, conf)
    preparation, batch = Preparation(sweeper.launcher), batch_of(sweeper)
    fast = preparation.all(0, batch)
    full = [preparation.alone(i, o)[0] for i, o in enumerate(batch)]
    return preparation, fast, full


def templated(preparation: Preparation, overrides: list[str]) -> bool:
    found = shape_of(overrides, preparation.choices)
    return found is not None and preparation.templates.get(found[0]) is not None


# (the sweep, whether a template prepares some of its jobs, the config: the project's, or
# the test's own, whose escaped `\${seed}` makes each job's checks run on its composition)
SUBDIR = "hydra.sweep.subdir=s${seed}_${hydra.job.num}"
EXCLUDE = "hydra.job.config.override_dirname.exclude_keys=[seed]"
# fmt: off
CASES = {
    "seeds": (["seed=range(5)"], True, "project"),
    "seeds, own config": (["seed=range(3)"], True, "own"),
    "map": (["model.lr_hidden=0.1,1.0", "model.lr_out=0.01,0.2", "logger=none"], True, "project"),
    "values that part fits": (["data.batch_size=32,64", "seed=1,2"], True, "project"),
    "groups and values": (["data=xor,moons", "seed=1,2", "model.hidden=2,4"], True, "own"),
    "+key": (["+trainer.deterministic=true,false", "seed=3,4"], True, "project"),
    "classes": (["task=multiclass", "task.num_classes=2,3", "seed=1,2"], True, "project"),
    "subdir reads a value": (["seed=1,2", SUBDIR], True, "own"),
    "dirname": (["seed=1,2", "data.noise=0.1,0.3", EXCLUDE], True, "own"),
    "refused values": (["model.optimizer.lr=0.1,-1", "seed=1,abc"], True, "project"),
    "refused values, own config": (["model.optimizer.lr=0.1,-1", "seed=1,abc"], True, "own"),
    "ddp": (["trainer=ddp", "seed=1,2"], False, "project"),
    "typed values": (["paths=test_typed", "paths.n=1,2", "seed=3,4"], False, "project"),
    "typed interpolation": (["paths=test_typed", "seed=3,4"], False, "project"),
    "a value and its parent": (["callbacks.histograms.every_n_epochs=5,10",
                                "callbacks.histograms=null"], False, "project"),
}
# fmt: on


@pytest.mark.parametrize("case", CASES)
def test_each_job_is_prepared_as_from_its_own_composition(case, own_conf):
    args, uses_template, which = CASES[case]
    conf = own_conf if which == "own" else CONF_DIR
    preparation, fast, full = prepared(args, conf)
    for mine, theirs in zip(fast, full, strict=True):
        for name in FIELDS:  # repr: 1, 1.0 and True differ; so does the order of keys
            assert repr(getattr(mine, name)) == repr(getattr(theirs, name)), (case, name)
    assert any(templated(preparation, j.overrides) for j in fast) == uses_template


def test_a_select_of_a_key_no_job_changes_is_resolved_once():
    """`model.net.n_out: ${oc.select:task.num_classes,1}` reads `task.num_classes` only:
    a seed sweep's jobs take it from the template, not each from a composition of its own."""
    preparation, fast, _ = prepared(["seed=range(3)"])
    template = preparation.templates[shape_of(fast[1].overrides, preparation.choices)[0]]
    assert template.by_omegaconf == []


# Hydra applies the config overrides in the command line's order: `++seed=7` after `seed=1`
# is 7. A list or a dict is merged into its node as Hydra merges it, not set as a value.
# fmt: off
HYDRAS = {
    "values": ["seed=1,2", "data.noise=0.2,0.3"],
    "a value, then ++ on its key": ["seed=1,2", "++seed=7"],
    "++ on a key, then its value": ["++seed=7", "seed=1,2"],
    "a value, then a dict on its parent": ["data.noise=0.1,0.2", "++data={noise:0.3}"],
    "a value, then ~ on its key": ["paths.foo=1,2", "~paths.foo"],
    "a value, then ++ on its child": ["paths.foo=null,3", "++paths.foo.x=1"],
    "lists and dicts": ["paths.pair=[3,4],[5]", "model.optimizer={lr:0.1},{lr:0.2}"],
}
# fmt: on


@pytest.mark.parametrize("case", HYDRAS)
def test_the_full_preparation_is_hydras_composition(case, own_conf):
    """The reference above is Hydra's: its own loader's config of a job, resolved; and so
    is every job the launcher prepares, whatever the order of its overrides."""
    sweeper = sweeper_for(HYDRAS[case], own_conf)
    launcher, batch = sweeper.launcher, batch_of(sweeper)
    fast = launcher._prepare_all(0, batch)
    inner = launcher.hydra_context.config_loader.inner
    for job, overrides in zip(fast, batch, strict=True):
        cfg = inner.load_sweep_config(sweeper.config, overrides)
        with open_dict(cfg):
            cfg.hydra.job.num = cfg.hydra.job.id = job.num
            cfg.hydra.runtime.output_dir = str(job.dir.resolve())
        HydraConfig.instance().cfg = cfg
        task = [k for k in cfg if k != "hydra"]
        plain = lambda v, r: OmegaConf.to_container(v, resolve=r) if OmegaConf.is_config(v) else v  # noqa: E731
        assert repr(job.unresolved) == repr({k: plain(cfg._get_node(k), False) for k in task})
        assert repr(job.resolved) == repr({k: plain(cfg[k], True) for k in task})


def test_workers_prepare_jobs_only_when_they_pay():
    """Workers for jobs composed in full: 2 s of them a worker (templated jobs go along)."""
    assert workers_for(full=1, workers=2) == 1
    assert workers_for(full=256, workers=2) == 1
    assert workers_for(full=400, workers=2) == 2
    assert workers_for(full=1024, workers=16) == 5


def test_jobs_prepared_by_workers_come_back_whole_and_in_order(monkeypatch):
    from hydra_plugins.xor_vectorized_launcher import prepare
    from xor_vectorized import forks

    sweeper = sweeper_for(["paths=test_typed", "paths.n=range(1,5)", "seed=7,8"])
    sweeper.launcher.settings["workers"] = 2
    # after Hydra's start, which runs its plugins' modules again
    monkeypatch.setattr(prepare, "WORKER_S", 1e-9)  # a worker for any job composed in full
    calls = []
    fork_map = forks.fork_map
    monkeypatch.setattr(
        forks, "fork_map", lambda f, items, n: calls.append(n) or fork_map(f, items, n, 4)
    )
    batch = batch_of(sweeper)
    forked = Preparation(sweeper.launcher).all(0, batch)
    assert calls == [2]  # typed: the 7 jobs after the first each composed, by 2 workers
    here = Preparation(sweeper.launcher)
    for i, (job, overrides) in enumerate(zip(forked, batch, strict=True)):
        assert repr([getattr(job, f) for f in FIELDS]) == repr(
            [getattr(here.alone(i, overrides)[0], f) for f in FIELDS]
        )


def test_the_fast_loader_survives_pickling():
    """An array task gets the launcher pickled: without the guard in `__getattr__` the
    loader's unpickling recurses looking for `inner` (RecursionError)."""
    import pickle
    import types

    from hydra_plugins.xor_vectorized_launcher.compose import FastSweepConfigLoader

    loader = pickle.loads(pickle.dumps(FastSweepConfigLoader(types.SimpleNamespace(x=1))))
    assert loader.x == 1
