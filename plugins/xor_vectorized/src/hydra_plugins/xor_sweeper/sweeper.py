"""Hydra's basic sweeper, whose check of a batch costs one composition per shape, not one
per job.

Before launching a batch, `BasicSweeper.sweep` calls `validate_batch_is_legal`, which
composes every job and throws the config away, to fail early on a job that cannot be
composed (Hydra's own comment: "This can be a bit slow for large jobs"). Its cost is one
composition a job: ~80 ms with Hydra's loader, ~3 ms with the vectorised launcher's, so
over a minute before a 65,536-job sweep starts. This sweeper overrides that public hook
and nothing else: the first job of each shape (`shapes.py`) is composed as Hydra composes
it, and when its value keys are untyped nodes, every other job of that shape composes too
(a value cannot fail there where another value succeeded); typed nodes, `a=1 a.b=2`, a
value whose key another override touches (`seed=1 ++seed=7`, where the order counts) and
lines that do not parse are composed job by job, as Hydra does. An illegal job therefore
fails with Hydra's own error, the first such job of the batch, before any job runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

from hydra_plugins.xor_sweeper.shapes import Shape, plain_keys, shape_of


class XorBasicSweeper(BasicSweeper):
    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Compose one job per shape (all of a shape whose keys are typed) with the same
        config loader Hydra's check uses; raise its error for the first illegal job."""
        assert self.hydra_context is not None and self.config is not None
        loader = self.hydra_context.config_loader
        choices = set(self.config.hydra.runtime.choices)
        legal: dict[Shape, bool] = {}  # shape -> any of its jobs composes
        for overrides in batch:
            found = shape_of(overrides, choices)
            if found is not None and legal.get(found[0]):
                continue
            cfg = loader.load_sweep_config(self.config, list(overrides))  # Hydra's error
            if found is not None and found[0] not in legal:
                legal[found[0]] = plain_keys(cfg, found[0].keys)
