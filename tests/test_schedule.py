"""The `scheduler` group: the rate each epoch runs at, as logged, against hand-computed values."""

import itertools
import math

import pytest

from tests.conftest import fit, load
from xor_lightning.errors import UserError
from xor_lightning.validate import validate_train

# Tests of a capability around the core: `make test` runs them, `make test-fast` does not.
pytestmark = pytest.mark.slow

# Full batch: one optimizer step per epoch; validation only where a test asks for it.
FAST = ("debug=quick", "logger=none", "callbacks.boundary_plot=null")


def rates(make_cfg, *overrides: str) -> tuple[list[float], dict]:
    """The `train/lr` of every epoch, and the scheduler's state after the last one."""
    trainer, _, logged = fit(make_cfg(*FAST, *overrides))
    return logged.series("train/lr"), trainer.lr_scheduler_configs[0].scheduler.state_dict()


def test_none_keeps_the_chapters_constant_rate(make_cfg):
    trainer, _, logged = fit(make_cfg(*FAST, "trainer.max_epochs=3"))
    assert (
        logged.series("train/lr") == pytest.approx([0.05] * 3) and not trainer.lr_scheduler_configs
    )


def test_cosine_warms_up_then_anneals_to_zero_at_max_epochs(make_cfg):
    lrs, state = rates(make_cfg, "scheduler=cosine", "scheduler.warmup_epochs=3",
                       "trainer.max_epochs=11")  # fmt: skip
    # warm-up: 1/4, 2/4, 3/4 of 0.05; then cos from 0 to π over the 8 epochs 3..10
    assert lrs[:4] == pytest.approx([0.0125, 0.025, 0.0375, 0.05])
    assert lrs[7] == pytest.approx(0.025)  # halfway: (1 + cos(π/2)) / 2
    assert lrs[10] == pytest.approx(0.05 * (1 + math.cos(7 * math.pi / 8)) / 2)
    assert all(a > b for a, b in itertools.pairwise(lrs[3:]))
    assert state["_last_lr"] == [pytest.approx(0.0, abs=1e-12)]  # 0 after the last epoch


# Lightning steps the scheduler in its own loop; with chunks (manual optimization) the
# module's ChunkSchedulers callback does: the same rates either way.
LOOPS = pytest.mark.parametrize("loop", ["model.steps_per_call=1", "model.steps_per_call=2"])


@LOOPS
def test_step_multiplies_by_gamma_every_step_size_epochs(make_cfg, loop):
    lrs, _ = rates(make_cfg, "scheduler=step", "scheduler.step_size=2", "scheduler.gamma=0.1",
                   "trainer.max_epochs=6", loop)  # fmt: skip
    assert lrs == pytest.approx([0.05, 0.05, 0.005, 0.005, 0.0005, 0.0005])


@LOOPS
def test_plateau_halves_after_each_validation_without_improvement(make_cfg, loop):
    # Validation after epochs 1, 3, 5, 7 (not the sanity check). An improvement must be
    # 99% here, so only the first counts: the rate halves after the 2nd, 3rd and 4th.
    lrs, state = rates(make_cfg, "scheduler=plateau", "scheduler.patience=0",
                       "+scheduler.threshold=0.99", "trainer.check_val_every_n_epoch=2",
                       "trainer.max_epochs=8", loop)  # fmt: skip
    assert lrs == pytest.approx([0.05] * 4 + [0.025] * 2 + [0.0125] * 2)
    assert state["_last_lr"] == [pytest.approx(0.00625)] and state["last_epoch"] == 4


@LOOPS
def test_the_checkpoint_holds_the_next_epochs_rate(make_cfg, tmp_path, loop):
    fit(make_cfg(*FAST, "scheduler=step", "scheduler.step_size=2", "scheduler.gamma=0.1",
                 "trainer.max_epochs=4", "callbacks.last_checkpoint.every_n_epochs=2",
                 loop))  # fmt: skip
    state = load(tmp_path / "checkpoints" / "last.ckpt")["lr_schedulers"][0]
    assert state["last_epoch"] == 4 and state["_last_lr"] == [pytest.approx(0.0005)]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["scheduler=cosine", "trainer.max_epochs=-1"], r"^scheduler.max_epochs=-1 is not"),
        (["scheduler=cosine", "scheduler.warmup_epochs=20", "trainer.max_epochs=20"],
         r"^scheduler.warmup_epochs=20 is not allowed: use fewer than scheduler.max_epochs=20"),
        (["scheduler=step", "+scheduler.step=3"], r"^unknown key scheduler.step: known keys"),
        (["scheduler=plateau", "scheduler.factor=1.5"], r"^scheduler.factor=1.5 is not allowed"),
        (["scheduler=step", "scheduler.step_size=0"], r"^scheduler.step_size=0 is not allowed"),
    ],
)  # fmt: skip
def test_bad_schedules_are_refused_in_one_line(make_cfg, overrides, message):
    with pytest.raises(UserError, match=message):
        validate_train(make_cfg(*overrides))
