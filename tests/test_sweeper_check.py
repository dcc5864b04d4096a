"""The checks around composition at sweep scale: the sweeper's check fails as Hydra's on
an illegal batch (and alone stops it under the basic launcher), plain values take the fast
path and an order of overrides that counts Hydra's own composition, xor-train sweeps with
Hydra's own sweeper unless told otherwise, and the checks a run makes give the same answers on a
composed config and on its plain resolved values (which is what the launcher checks each
job on). The launcher's jobs themselves: tests/test_composition.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from omegaconf import OmegaConf

from hydra_plugins.xor_sweeper.sweeper import XorBasicSweeper
from tests.test_composition import _leave_hydra_as_found, batch_of, sweeper_for  # noqa: F401
from xor_lightning.config import CONF_DIR

# Tests of a capability around the core: `make test` runs them, `make test-fast` does not.
pytestmark = pytest.mark.slow

BAD = {
    "a bad key": ["seed=1,2", "model.hiden=3,4"],
    "a bad group": ["data=xor,nope", "seed=1,2"],
    "a bad typed value": ["paths=test_typed", "paths.n=1,oops"],
    "a key of one group only": ["data=xor,csv", "data.n_val=100,200"],
    "a value, then + on its key": ["foo=1,2", "+foo=7"],  # Hydra sets foo=1 first
    "a value, then ~ on its key": ["seed=1,2", "~seed=0"],  # Hydra: seed is 1, not 0
}


@pytest.mark.parametrize("case", BAD)
def test_an_illegal_job_fails_the_check_with_hydras_error(case):
    """xor-train's sweeper and the vectorised launcher's loader, against Hydra's own."""

    def error(kind: type) -> str:
        sweeper = sweeper_for(BAD[case], kind=kind)
        with pytest.raises(Exception) as caught:
            sweeper.validate_batch_is_legal(batch_of(sweeper))
        return f"{type(caught.value).__name__}: {caught.value}"

    assert error(XorBasicSweeper) == error(BasicSweeper)


# (the sweep, Hydra's error). Under the basic launcher only the sweeper's check stops it:
# without it the first job (data=xor, one epoch) would run and leave its dir.
# fmt: off
STOPS = {
    "vectorized": (["hydra/launcher=vectorized", "data=xor,csv", "data.n_val=100"],
                   "Could not override 'data.n_val'"),  # the second job's data=csv has no n_val
    "vectorized, an order Hydra refuses": (["hydra/launcher=vectorized", "foo=1,2", "+foo=7"],
                                           "Could not override 'foo'"),
    "basic": (["hydra/launcher=basic", "data=xor,csv", "data.n_val=100", "trainer.max_epochs=1"],
              "Could not override 'data.n_val'"),
}
# fmt: on


@pytest.mark.parametrize("case", STOPS)
def test_a_sweep_with_an_illegal_job_stops_before_any_job_runs(case, tmp_path):
    from tests.conftest import cli

    d = tmp_path / "s"
    sweep, error = STOPS[case]
    proc = cli(
        "train", "-m", "hydra/sweeper=xor_basic", *sweep, f"hydra.sweep.dir={d}", cwd=tmp_path
    )
    assert proc.returncode == 1
    assert error in proc.stderr, proc.stderr[-2000:]
    assert not [p for p in d.iterdir() if p.is_dir()]  # no job's dir: multirun.yaml, .lock


def test_values_take_the_fast_path_and_an_order_that_counts_hydras(monkeypatch):
    """A sweep of plain values costs the launcher's loader one composition by Hydra per
    set of group choices (a group's own values too), and the sweeper's check one job of
    each; where an override touches a value's key, Hydra composes each job whole
    (`seed=1 ++seed=7` is 7, as the command line's order says)."""
    sweeper = sweeper_for(["data=xor,moons", "data.noise=0.1,0.2", "seed=range(3)"])
    loader = sweeper.launcher.hydra_context.config_loader
    assert sweeper.hydra_context.config_loader is loader  # the check's too
    composed, checked = [], []
    hydras, fasts = loader.inner.load_sweep_config, loader.load_sweep_config
    monkeypatch.setattr(loader.inner, "load_sweep_config",
                        lambda m, o: composed.append(list(o)) or hydras(m, o))  # fmt: skip
    monkeypatch.setattr(loader, "load_sweep_config",
                        lambda m, o: checked.append(list(o)) or fasts(m, o))  # fmt: skip
    batch = batch_of(sweeper)
    sweeper.validate_batch_is_legal(batch)
    assert checked == [batch[0], batch[6]]
    assert [fasts(sweeper.config, o).seed for o in batch] == [0, 1, 2] * 4
    assert composed == [["data=xor"], ["data=moons"]]  # each without its values, once

    sweeper = sweeper_for(["seed=1,2", "++seed=7"])
    loader = sweeper.launcher.hydra_context.config_loader
    hydras, composed = loader.inner.load_sweep_config, []
    monkeypatch.setattr(loader.inner, "load_sweep_config",
                        lambda m, o: composed.append(list(o)) or hydras(m, o))  # fmt: skip
    batch = batch_of(sweeper)
    assert [loader.load_sweep_config(sweeper.config, o).seed for o in batch] == [7, 7]
    assert composed == batch


def test_xor_train_sweeps_with_hydras_sweeper_unless_told_otherwise():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        chosen = {
            tuple(o): compose("train", o, return_hydra_config=True).hydra.sweeper._target_
            for o in ([], ["hydra/sweeper=xor_basic"], ["hparams_search=xor_optuna"])
        }
    assert chosen == {
        (): "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
        ("hydra/sweeper=xor_basic",): "hydra_plugins.xor_sweeper.sweeper.XorBasicSweeper",
        ("hparams_search=xor_optuna",): "hydra_plugins.xor_optuna_sweeper.sweeper.XorOptunaSweeper",
    }


def test_hydras_check_is_the_hook_it_overrides():
    """The private parts this relies on: BasicSweeper's module, and its `sweep` checking
    each batch through the public `validate_batch_is_legal` before launching it."""
    import inspect

    assert "self.validate_batch_is_legal(batch)" in inspect.getsource(BasicSweeper.sweep)
    assert issubclass(XorBasicSweeper, BasicSweeper)
    assert Path(inspect.getfile(BasicSweeper)).name == "basic_sweeper.py"


REFUSED = [[], ["seed=-1"], ["model.hidden=0"], ["data.noise=2"], ["trainer.max_epochs=0"],
           ["trainer.accelerator=tpu"], ["+foo=1"], ["+model.foo=1"], ["+data.foo=1"],
           ["+trainer.foo=1"], ["+trainer.accumulate_grad_batches=2"], ["model.lr_hidden=-1"],
           ["scheduler=cosine", "scheduler.warmup_epochs=500"], ["data=csv"],
           ["data=csv", "data.path={csv}", "data.val_fraction=0.6", "data.test_fraction=0.5"],
           ["model.net._target_=torch.nn.Linear"], ["data._target_=foo.Bar"], ["callbacks=none"],
           ["model.activation=swish"], ["trainer.devices=[0,-2]"], ["model.net=null"]]  # fmt: skip


@pytest.mark.parametrize("overrides", REFUSED, ids=[" ".join(o) or "valid" for o in REFUSED])
def test_the_checks_say_the_same_of_a_config_and_its_plain_resolved_values(overrides, tmp_path):
    """The launcher checks each job's plain resolved config (`xor_lightning.plain`)."""
    from tests.conftest import compose_train, write_points
    from xor_lightning.errors import UserError
    from xor_lightning.validate import validate_train

    def outcome(cfg: Any) -> str:
        try:
            validate_train(cfg)
        except UserError as e:
            return str(e)
        return "ok"

    csv = write_points(tmp_path / "points.csv")
    cfg = compose_train("paths.output_dir=/nonexistent", *(o.format(csv=csv) for o in overrides))
    assert outcome(cfg) == outcome(OmegaConf.to_container(cfg, resolve=True))


def test_n_features_reads_only_the_keys_it_declares(tmp_path):
    """The launcher resolves `n_in` once for jobs that differ in other `data.*` keys."""
    from tests.conftest import write_points
    from xor_lightning.config import N_FEATURES_READS, n_features

    seen: set[str] = set()

    class Recording(dict):
        def get(self, key: str, default: Any = None) -> Any:
            seen.add(key)
            return super().get(key, default)

        def __getitem__(self, key: str) -> Any:
            seen.add(key)
            return super().__getitem__(key)

    csv = str(write_points(tmp_path / "points.csv"))
    for data in ({"problem": "xor", "seed": 3, "noise": 0.1}, {"problem": "moons", "n_features": 5},
                 {"problem": "csv", "path": csv, "seed": 1, "val_fraction": 0.2}):  # fmt: skip
        n_features(Recording(data))
    assert seen == set(N_FEATURES_READS)
