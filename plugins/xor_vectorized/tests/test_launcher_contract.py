"""Hydra's launcher contract: Hydra registers `hydra/launcher=vectorized` for every app in
the environment, and an app other than xor-train gets exactly what the basic launcher gives
it. hydra-core ships the suites every launcher plugin runs; they run here on both."""

import pytest
from hydra.test_utils.launcher_common_tests import (
    BatchedSweeperTestSuite,
    IntegrationTestSuite,
    LauncherTestSuite,
)

from hydra_plugins.xor_vectorized_launcher.launcher import stacks
from xor_lightning import train

# Tests of a capability around the core: `make test` runs them, `make test-fast` does not.
pytestmark = pytest.mark.slow

# The suites were written for Hydra's old default of changing into the job's dir.
LAUNCHERS = [(name, ["hydra.job.chdir=True"]) for name in ("basic", "vectorized")]
BATCHES_OF_2 = [(name, [*o, "hydra.sweeper.max_batch_size=2"]) for name, o in LAUNCHERS]


@pytest.mark.parametrize("launcher_name, overrides", LAUNCHERS)
class TestLauncher(LauncherTestSuite):
    pass


@pytest.mark.parametrize("launcher_name, overrides", BATCHES_OF_2)
class TestBatchedSweeper(BatchedSweeperTestSuite):
    pass


@pytest.mark.slow
@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags", [({}, ["-m", "hydra/launcher=vectorized"])]
)
class TestIntegration(IntegrationTestSuite):
    pass


def test_only_xor_train_is_stacked():
    """The launcher tells xor-train's task from any other app's (also run as __main__)."""
    assert stacks(train.main.__wrapped__)
    assert not stacks(lambda cfg: 100)

    def main(cfg):  # same name, another file
        return cfg

    assert not stacks(main)
