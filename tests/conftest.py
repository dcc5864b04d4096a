"""Shared fixtures: compose the train config with Hydra's compose API, in a temp dir."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from xor_lightning.config import CONF_DIR

Composer = Callable[..., DictConfig]


def compose_train(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


@pytest.fixture
def make_cfg(tmp_path: Path) -> Composer:
    """Compose the train config with its outputs in this test's temp dir."""

    def make(*overrides: str, out: Path | None = None) -> DictConfig:
        return compose_train(f"paths.output_dir={out or tmp_path}", *overrides)

    return make
