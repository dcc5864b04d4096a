"""The stacked computation and the launcher's composition, checked against their originals."""

import copy
import csv
import math

import pytest
import torch
import torch.nn.functional as F
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf

from hydra_plugins.xor_vectorized_launcher.compose import (
    FastSweepConfigLoader,
    HydraNodes,
    task_containers,
)
from xor_lightning.binary import Binary
from xor_lightning.config import CONF_DIR
from xor_lightning.data import make_xor
from xor_lightning.model import MLP
from xor_lightning.module import XORModule
from xor_lightning.sweeps.seeds import success_rates, wilson
from xor_lightning.tasks import Task
from xor_lightning.train import build
from xor_vectorized.fit import init_net
from xor_vectorized.groups import stack_key, stack_problem
from xor_vectorized.net import StackedAdam, StackedMLP

# Tests of a capability around the core: `make test` runs them, `make test-fast` does not.
pytestmark = pytest.mark.slow

# (hidden, activation, lr, betas, eps, weight_decay, data seed)
SPECS = [
    (8, "tanh", 0.05, (0.9, 0.999), 1e-8, 0.0, 1),
    (2, "relu", 0.01, (0.8, 0.99), 1e-6, 0.0, 2),
    (5, "sigmoid", 0.1, (0.9, 0.999), 1e-8, 0.01, 3),
    (8, "gelu", 0.2, (0.95, 0.9), 1e-4, 0.1, 4),
    (1, "tanh", 0.05, (0.9, 0.999), 1e-8, 0.0, 5),
]


def _hyper(specs):
    t = lambda xs: torch.tensor(xs, dtype=torch.float64)  # noqa: E731
    return dict(lr=t([s[2] for s in specs]), beta1=t([s[3][0] for s in specs]),
                beta2=t([s[3][1] for s in specs]), eps=t([s[4] for s in specs]),
                weight_decay=t([s[5] for s in specs]))  # fmt: skip


@pytest.mark.parametrize("decoupled", [False, True], ids=["Adam", "AdamW"])
def test_stacked_models_train_as_each_alone_would(decoupled):
    """Ten Adam steps of five different MLPs, stacked, against torch's Adam on each alone."""
    nets, alone = [], []
    for hidden, act, lr, betas, eps, wd, seed in SPECS:
        torch.manual_seed(seed)
        nets.append(MLP(hidden=hidden, activation=act))
        net = copy.deepcopy(nets[-1])
        X, y = make_xor(400, 0.1, seed, 0)
        kind = torch.optim.AdamW if decoupled else torch.optim.Adam
        opt = kind(net.parameters(), lr=lr, betas=betas, eps=eps, weight_decay=wd, fused=True)
        for _ in range(10):
            opt.zero_grad()
            F.binary_cross_entropy_with_logits(net(X), y).backward()
            opt.step()
        alone.append(net)
    stacked = StackedMLP(nets, [s[1] for s in SPECS])
    opt = StackedAdam(stacked.flat_params(), decoupled=decoupled, **_hyper(SPECS))
    X = torch.stack([make_xor(400, 0.1, s[6], 0)[0] for s in SPECS])
    y = torch.stack([make_xor(400, 0.1, s[6], 0)[1] for s in SPECS])
    for _ in range(10):
        opt.zero_grad()
        losses = F.binary_cross_entropy_with_logits(stacked(X), y, reduction="none")
        losses.mean(dim=(1, 2)).sum().backward()
        opt.step()
    for k, net in enumerate(alone):
        mine = stacked.net_state(k)
        for name, value in net.state_dict().items():
            assert mine[name].shape == value.shape
            torch.testing.assert_close(mine[name], value, atol=1e-5, rtol=0)
    # the padding of the narrow nets is exactly zero still, weights and outputs alike
    assert (
        stacked.weights[0][4, 1:].abs().sum() == 0 and stacked.weights[1][4, :, 1:].abs().sum() == 0
    )
    with torch.no_grad():
        torch.testing.assert_close(stacked(X)[1], alone[1](X[1]), atol=1e-6, rtol=0)


def test_a_frozen_model_keeps_its_weights_and_state():
    nets = [MLP(hidden=3), MLP(hidden=3)]
    stacked = StackedMLP(nets, ["tanh", "tanh"])
    opt = StackedAdam(stacked.flat_params(), **_hyper(SPECS[:2]))
    X, y = torch.randn(2, 50, 2), (torch.rand(2, 50, 1) > 0.5).float()
    opt.alive = torch.tensor([True, False])
    before = [p.detach().clone() for p in stacked.flat_params()]
    for _ in range(3):
        opt.zero_grad()
        F.binary_cross_entropy_with_logits(stacked(X), y).backward()
        opt.step()
    for p, b in zip(stacked.flat_params(), before, strict=True):
        assert torch.equal(p[1], b[1]) and not torch.equal(p[0], b[0])
    assert opt.state[stacked.weights[0]]["step"].tolist() == [3.0, 0.0]


def test_initial_weights_are_drawn_as_the_run_alone_draws_them(make_cfg):
    for overrides in (("seed=7",), ("seed=123", "model.hidden=3", "model.activation=relu")):
        cfg = make_cfg(*overrides)
        _, module, _ = build(cfg)
        net, _ = init_net(OmegaConf.to_container(cfg, resolve=True))
        for a, b in zip(net.parameters(), module.net.parameters(), strict=True):
            assert torch.equal(a, b)  # bitwise


def test_jobs_that_may_share_a_fit_and_those_that_may_not(make_cfg):
    def key(*overrides):
        return stack_key(OmegaConf.to_container(make_cfg(*overrides), resolve=False))

    assert key("seed=1", "model.hidden=2", "model.optimizer.lr=0.1", "data.noise=0.2") == key()
    assert key("data.aspect=0.5") == key()
    assert key("model.activation=relu", "+model.optimizer.eps=1e-6") == key()
    assert key("data.batch_size=64") != key()
    assert key("trainer.max_epochs=10") != key()
    plain = lambda *o: OmegaConf.to_container(make_cfg(*o), resolve=True)  # noqa: E731
    assert stack_problem(plain()) is None
    assert stack_problem(plain("model.optimizer._target_=torch.optim.SGD")) is None  # plain
    assert "RMSprop" in stack_problem(plain("model.optimizer._target_=torch.optim.RMSprop"))
    assert "momentum" in stack_problem(
        plain("model.optimizer._target_=torch.optim.SGD", "+model.optimizer.momentum=0.9")
    )
    assert "amsgrad" in stack_problem(plain("+model.optimizer.amsgrad=true"))


class WiderModule(XORModule):
    """A copier's XORModule that only takes one more argument: stacked."""

    def __init__(self, *args, note: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)


class OwnStep(WiderModule):
    """One that trains its own way: run alone."""

    def training_step(self, batch, batch_idx):
        return super().training_step(batch, batch_idx)


POINT_MEANS = "per-point scores: Task.scores"


def test_own_modules_and_tasks_that_may_share_a_fit_and_those_that_may_not(make_cfg, monkeypatch):
    """(The classes here count as named by a config file, as a copier's would be.)"""
    import xor_lightning.targets as targets

    named = targets.trusted
    own = "tests.template_example.own_module.SineRegressor"  # a LightningModule
    mine = {own} | {f"{__name__}.{c}" for c in ("WiderModule", "OwnStep", "NoScores")}
    monkeypatch.setattr(targets, "trusted", lambda where: named(where) | mine)
    plain = lambda *o: OmegaConf.to_container(make_cfg(*o), resolve=True)  # noqa: E731
    here = __name__
    assert stack_problem(plain(f"+model._target_={here}.WiderModule")) is None
    why = stack_problem(plain(f"+model._target_={here}.OwnStep"))
    assert why == f"model._target_={here}.OwnStep (its own training_step)"
    why = stack_problem(plain(f"+model._target_={own}"))
    assert why == f"model._target_={own} (a LightningModule of your own, not an XORModule)"
    for task in ("multiclass", "regression"):
        assert stack_problem(plain(f"task={task}")) is None
    why = stack_problem(plain(f"task._target_={here}.NoScores"))
    assert why == f"task._target_={here}.NoScores (its metrics are not means of {POINT_MEANS})"


class NoScores(Binary):
    """A task of one's own whose metrics are not per-point means."""

    scores = Task.scores


@pytest.fixture
def loader():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        yield GlobalHydra.instance().config_loader()


JOBS = [
    ["seed=3"],
    ["model.hidden=4", "model.optimizer.lr=0.01", "seed=9"],
    ["data=moons", "seed=2"],  # a group choice: composed by Hydra, then values set
    ["data.batch_size=null", "model.activation=relu", "trainer.max_epochs=7"],
    ["+trainer.deterministic=true", "seed=1"],  # an addition
    ["hydra.job.chdir=false", "data.noise=0.25"],
    ["experiment=noisy", "+model.optimizer.betas=[0.8,0.9]", "trainer.devices=[0]"],  # lists
    ["paths.output_dir='a b'", "trainer.accelerator=cpu"],  # a quoted string
]


@pytest.mark.parametrize("overrides", JOBS, ids=[" ".join(j) for j in JOBS])
def test_fast_composition_equals_hydras(loader, overrides):
    master = loader.load_configuration(
        "train", overrides=["model.hidden=2,8"], run_mode=RunMode.MULTIRUN
    )
    fast = FastSweepConfigLoader(loader)
    fast.load_sweep_config(master, ["seed=0"])  # a first job: the composition is cached
    mine = fast.load_sweep_config(master, overrides)
    theirs = loader.load_sweep_config(master, overrides)
    assert OmegaConf.to_container(mine) == OmegaConf.to_container(theirs)
    if not any(o.startswith("paths.") for o in overrides):
        for cfg in (mine, theirs):  # what the launcher sets
            cfg.hydra.runtime.output_dir, cfg.hydra.job.id, cfg.hydra.job.num = "/tmp/x", 7, 7
        from hydra.core.hydra_config import HydraConfig

        for cfg in (mine, theirs):
            HydraConfig.instance().set_config(cfg)
        assert HydraNodes().container(mine) == OmegaConf.to_container(
            theirs.hydra, enum_to_str=True
        )
        raw, resolved = task_containers(mine)
        plain = lambda v: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v  # noqa: E731
        assert resolved == {k: plain(theirs[k]) for k in theirs if k != "hydra"}
        assert raw == {k: v for k, v in OmegaConf.to_container(theirs).items() if k != "hydra"}


def test_a_bad_key_fails_as_hydra_fails(loader):
    from hydra.errors import ConfigCompositionException

    master = loader.load_configuration("train", overrides=[], run_mode=RunMode.MULTIRUN)
    with pytest.raises(ConfigCompositionException, match=r"Could not override 'model\.hiden'"):
        FastSweepConfigLoader(loader).load_sweep_config(master, ["model.hiden=4"])


def test_wilson_interval_by_hand():
    # 0 of 10: the upper end is z²/(n + z²) = 3.8415 / 13.8415
    assert wilson(0, 10) == (0.0, pytest.approx(0.27754, abs=1e-5))
    # 5 of 10: centre 0.5, half-width z·sqrt(0.025 + z²/400)/(1 + z²/10) = 0.2634
    low, high = wilson(5, 10)
    assert low == pytest.approx(0.23659, abs=1e-5) and high == pytest.approx(0.76341, abs=1e-5)
    assert wilson(10, 10)[1] == 1.0 and wilson(0, 1000)[0] == 0.0


def test_success_rates_count_failed_and_missing_jobs_as_not_learned(tmp_path):
    rows = [  # width 2: one learned, one below 0.95, one failed; width 1: none reported
        ("ok", "seed=0 model.hidden=2", "0.96"),
        ("ok", "seed=1 model.hidden=2", "0.90"),
        ("failed", "seed=2 model.hidden=2", ""),
        ("ok", "seed=0 model.hidden=8", "0.95"),
    ]
    with open(tmp_path / "summary.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["job", "status", "overrides", "test/acc"])
        w.writerows((i, *r) for i, r in enumerate(rows))
    table = {r["hidden"]: r for r in success_rates(tmp_path / "summary.csv", seeds=3)}
    assert (table[2]["learned"], table[2]["seeds"]) == (1, 3)
    assert table[2]["rate"] == pytest.approx(1 / 3)
    assert (table[8]["learned"], table[1]["learned"]) == (1, 0)
    assert (table[2]["ci_low"], table[2]["ci_high"]) == pytest.approx(wilson(1, 3))
    assert not math.isnan(table[1]["ci_high"])


@pytest.mark.slow
def test_what_the_seed_figure_shows(make_cfg, tmp_path):
    """docs/seed-study.md's reading of `make seeds`, on 48 seeds a width: one and two tanh units
    never learn the chapter's XOR (test/acc >= 0.95), eight almost always do."""
    from xor_vectorized.fit import fit_group

    base = OmegaConf.to_container(make_cfg("logger=none"), resolve=True)
    cfgs = []
    for w in (1, 2, 8):
        for s in range(48):  # what `seed=s model.hidden=w` sets (data.seed follows seed)
            cfg = copy.deepcopy(base)
            cfg["seed"] = cfg["data"]["seed"] = s
            cfg["model"]["hidden"] = cfg["model"]["net"]["hidden"] = w
            cfgs.append(cfg)
    tested = fit_group(cfgs, str(tmp_path)).tested["test/acc"].reshape(3, 48)
    learned = (tested >= 0.95).sum(dim=1).tolist()
    assert learned[0] == learned[1] == 0 and learned[2] >= 44
    assert float(tested[1].max()) > float(tested[0].max())  # two lines beat one


@pytest.mark.parametrize("shuffle", [True, False])
def test_a_tensor_loader_batched_at_once_gives_its_batches_bit_for_bit(shuffle):
    """`anydata.batched`: the same batches in the same order, epoch after epoch (the
    loader's generator drawn from as its own iterator draws from it)."""
    from torch.utils.data import DataLoader, TensorDataset

    from xor_vectorized.anydata import batched

    X, y = torch.randn(250, 2), torch.randint(0, 3, (250,))

    def loader() -> DataLoader:
        g = torch.Generator().manual_seed(5)
        return DataLoader(TensorDataset(X, y), batch_size=64, shuffle=shuffle, generator=g)

    ref, mine = loader(), batched(loader())
    assert mine.batch_size is None  # indexed at once, not fetched point by point
    for epoch in range(3):
        for (xa, ya), (xb, yb) in zip(ref, mine, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb), epoch


def test_the_seed_study_refuses_fewer_than_one_seed_in_one_line(capsys):
    from xor_lightning.sweeps.seeds import main

    with pytest.raises(SystemExit) as stopped:
        main(["--seeds", "0"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err == "error: --seeds=0 is not allowed: use an integer >= 1\n"
