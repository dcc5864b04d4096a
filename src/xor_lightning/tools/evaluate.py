"""Score a checkpoint: `python -m xor_lightning.tools.evaluate ckpt_path=<file>` or `xor-eval`.

The model and the data are rebuilt from the run config stored in the checkpoint, so
no run dir is needed; `data.*` overrides (a bigger test set, more noise: any argument of
the checkpoint's datamodule) show how the model generalises. The scores are the module's
own `trainer.validate` and `trainer.test`, whatever the LightningModule.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from xor_lightning.checkpoint import data_kwargs, load_checkpoint, load_module, run_config
from xor_lightning.config import CONF_DIR, quiet_known_warnings, run_app
from xor_lightning.errors import UserError
from xor_lightning.report import ordered
from xor_lightning.rules import EVAL_RULES, check
from xor_lightning.validate import check_accelerator

log = logging.getLogger(__name__)


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

    module = load_module(ckpt)  # the shipped XORModule or the run's own
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
    metrics = ordered({k: v for k, v in scores.items() if k.startswith(("val/", "test/"))})

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


def checkpoint_data_keys(argv: list[str]) -> None:
    """Make every key of the checkpoint's data config an option `data.<key>` (null: the
    checkpoint's value), so a datamodule of your own takes its overrides like XOR's: its
    keys are stored as Hydra's config `checkpoint_data/keys`, which conf/evaluate.yaml uses
    when it exists. A checkpoint that does not load is left to `evaluate` to refuse."""
    from hydra.core.config_store import ConfigStore

    given = [a.split("=", 1)[1].strip("'\"") for a in argv if a.startswith("ckpt_path=")]
    try:
        data = run_config(load_checkpoint(given[-1]))["data"] if given else {}
    except UserError:
        return
    keys = {k: None for k in data if not str(k).startswith("_")}
    ConfigStore.instance().store(group="checkpoint_data", name="keys", node=keys, package="data")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="evaluate")
def _main(cfg: DictConfig) -> float:
    return run_app(evaluate, cfg).get("test/loss", float("nan"))


def main() -> None:
    """`xor-eval`: the checkpoint's data keys as options, then Hydra's entry point."""
    checkpoint_data_keys(sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
