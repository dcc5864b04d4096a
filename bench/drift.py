"""How far a vectorised job drifts from its run alone: the default run over N seeds.

Each seed is trained twice in this process: as one of N models stacked in one fit
(`xor_vectorized.fit.fit_group`, what `hydra/launcher=vectorized` runs) and as a
run of its own (`xor_lightning.train.train`). Printed, after 10 epochs and after 401: the
largest difference between the two final weights, how many seeds differ by more than
1e-5, and how many end with another best val/acc or test/acc, by how much at most.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from xor_lightning.config import CONF_DIR
from xor_lightning.train import train
from xor_vectorized import app
from xor_vectorized.fit import fit_group
from xor_vectorized.outputs import model_slice

NO_PICTURES = [f"callbacks.{c}=null" for c in ("boundary_plot", "hidden_units_plot", "histograms")]


def compare(seeds: int, epochs: int) -> str:
    with (
        tempfile.TemporaryDirectory() as tmp,
        initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"),
    ):
        cfgs = [compose("train", [f"seed={s}", f"trainer.max_epochs={epochs}", "logger=none",
                                  f"paths.output_dir={tmp}/{s}", *NO_PICTURES])
                for s in range(seeds)]  # fmt: skip
        stacked = fit_group([OmegaConf.to_container(c, resolve=True) for c in cfgs], tmp)
        weights, scores = [], []
        for k, cfg in enumerate(cfgs):
            alone = train(cfg)
            last = torch.load(Path(tmp, str(k), "checkpoints", "last.ckpt"), weights_only=True)
            theirs = [v for n, v in last["state_dict"].items() if n.startswith("net.")]
            mine = model_slice(stacked.last, stacked.net.shapes[k], k)
            pairs = zip(mine, theirs, strict=True)
            weights.append(max(float((a - b).abs().max()) for a, b in pairs))
            val = abs(float(stacked.best["score"][k]) - alone["val/acc"])
            scores.append(max(val, abs(float(stacked.tested["test/acc"][k]) - alone["test/acc"])))
    return (f"{epochs} epochs, {seeds} seeds: largest weight difference {max(weights):.1e}, "
            f"{sum(w > 1e-5 for w in weights)} seeds beyond 1e-5; val/acc or test/acc differs "
            f"for {sum(s > 0 for s in scores)} seeds, by at most {max(scores):.4f}")  # fmt: skip


def main() -> None:
    for name in ("lightning.pytorch", "lightning.fabric"):  # the runs' start-up lines
        logging.getLogger(name).setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=32)
    args = parser.parse_args()
    app.use("xor_lightning")  # the engine reads xor-train's runs, as its launcher does
    for epochs in (10, 401):
        print(compare(args.seeds, epochs), flush=True)


if __name__ == "__main__":
    main()
