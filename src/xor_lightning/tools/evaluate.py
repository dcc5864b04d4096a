"""Score a checkpoint: `python -m xor_lightning.tools.evaluate ckpt_path=<file>` or `xor-eval`.

The model and the data are rebuilt from the run config stored in the checkpoint, so
no run dir is needed; `data.*` overrides (a bigger test set, more noise) show how the
model generalises.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from xor_lightning.checkpoint import data_kwargs, load_checkpoint, run_config
from xor_lightning.config import CONF_DIR, check_accelerator, quiet_known_warnings, run_app
from xor_lightning.errors import UserError
from xor_lightning.validate import EVAL_RULES, check

log = logging.getLogger(__name__)
KEYS = ("test/acc", "test/loss", "val/acc", "val/loss")


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Run the validation and test sets through the checkpoint; write `metrics.json`."""
    check(cfg, EVAL_RULES)
    check_accelerator(cfg.accelerator)
    ckpt = load_checkpoint(cfg.ckpt_path)
    data_class, data = data_kwargs(ckpt, OmegaConf.to_container(cfg.data))
    if data.get("problem") == "csv" and (cfg.data.n_val or cfg.data.n_test):
        raise UserError(
            "data.n_val and data.n_test do not apply to a CSV run: its sets are fractions of "
            "its points (data.seed draws other ones)"
        )

    import lightning as L

    from xor_lightning.module import XORModule

    module = XORModule(run_config(ckpt)["model"]["net"])
    module.load_state_dict(ckpt["state_dict"])
    quiet_known_warnings()
    trainer = L.Trainer(
        accelerator=cfg.accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    datamodule = data_class(**data)
    datamodule.load_state_dict(ckpt.get(type(datamodule).__qualname__, {}))  # a CSV's points
    scores = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    scores |= trainer.test(module, datamodule=datamodule, verbose=False)[0]
    metrics = {k: float(scores[k]) for k in KEYS}

    log.info(
        "checkpoint: %s (epoch %s, step %s)", cfg.ckpt_path, ckpt["epoch"], ckpt["global_step"]
    )
    log.info("data: %s", ", ".join(f"{k}={v}" for k, v in data.items() if k != "n_samples"))
    for k, v in metrics.items():
        log.info("%-9s %.4f", k, v)
    out = Path(cfg.paths.output_dir) / "metrics.json"
    out.write_text(json.dumps(metrics, indent=2) + "\n")
    log.info("wrote %s", out)
    return metrics


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> float:
    return run_app(evaluate, cfg)["test/acc"]


if __name__ == "__main__":
    main()
