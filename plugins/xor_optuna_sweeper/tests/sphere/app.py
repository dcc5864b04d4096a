"""A Hydra app for the sweeper's tests: the release's example tasks, milliseconds a trial.

`sphere` (minimise x² + y² [+ z² + w²]), `binh_korn` (two objectives), and `curve`: a
training curve that reports to its Optuna trial at each step and stops when pruned.
"""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path=".", config_name="sphere")
def main(cfg: DictConfig) -> Any:
    x, y = cfg.x, cfg.y
    if cfg.error:
        raise RuntimeError("cfg.error is True")
    if cfg.task == "binh_korn":
        return 4 * x**2 + 4 * y**2, (x - 5) ** 2 + (y - 5) ** 2
    value = x**2 + y**2 + cfg.get("z", 0) ** 2 + cfg.get("w", 0) ** 2
    if cfg.task == "curve":
        return curve(value, cfg.steps)
    return float("nan") if cfg.task == "returns_nan" else value


def curve(final: float, steps: int) -> float:
    """Falls to `final` over `steps` steps, reported to the trial; stops when pruned."""
    import optuna
    from hydra.core.hydra_config import HydraConfig

    from hydra_plugins.xor_optuna_sweeper.trials import TrialReporter

    reporter = TrialReporter.from_hydra(HydraConfig.get())
    for step in range(steps):
        value = final + 10 / (step + 1)
        if reporter is not None and reporter.report(value, step):
            raise optuna.TrialPruned(f"pruned at step {step}")
    return final + 10 / steps


def configure(cfg: DictConfig, trial: Any) -> None:
    """The release's custom search space, plus a conditional parameter: w only when y > 0."""
    x = trial.params["x"]
    trial.suggest_float("z", x - cfg.max_z_difference_from_x, x + cfg.max_z_difference_from_x)
    if trial.params["y"] > 0:
        trial.suggest_float("+w", 0.0, 1.0)  # + : w is not in the config


if __name__ == "__main__":
    main()
