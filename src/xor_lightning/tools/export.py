"""Ship a checkpoint: `python -m xor_lightning.tools.export ckpt_path=<file> format=onnx|pt2`.

The exported model takes a (batch, n_in) float32 tensor of any batch size (n_in is 2 for
the chapter's problems) and returns what the task reads out: the probability of label 1
(batch, 1) for a binary task, the classes' softmax probabilities (batch, K) for a
multiclass one, the value (batch, 1) for a regression. The file is checked against the
PyTorch model, on a grid of points of the plane, or for n_in != 2 on 10,201 seeded random
points of [-1.5, 1.5]^n_in, before it is put in place.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from torch import nn

from xor_lightning.checkpoint import load_checkpoint
from xor_lightning.config import CONF_DIR, quiet_known_warnings, run_app
from xor_lightning.errors import UserError
from xor_lightning.tools.trained import input_names, load_trained

log = logging.getLogger(__name__)
FORMATS = ("onnx", "pt2")
TOLERANCE = 1e-5
OUTPUT = {"binary": "prob", "multiclass": "probs", "regression": "prediction"}


def grid(n: int = 101, lim: float = 1.5, n_in: int = 2) -> torch.Tensor:
    """An n-by-n grid over [-lim, lim]², a little beyond the data's square; for n_in != 2,
    n² seeded uniform points of [-lim, lim]^n_in."""
    if n_in != 2:
        g = torch.Generator().manual_seed(0)
        return (torch.rand(n * n, n_in, generator=g) * 2 - 1) * lim
    axis = torch.linspace(-lim, lim, n)
    return torch.cartesian_prod(axis, axis)


def _onnx(model: nn.Module, path: Path, x: torch.Tensor, output: str) -> torch.Tensor:
    import onnxruntime as ort

    for name in ("torch.onnx", "onnxscript", "onnx_ir"):  # step-by-step exporter chatter
        logging.getLogger(name).setLevel(logging.ERROR)
    batch = torch.export.Dim("batch")
    torch.onnx.export(
        model,
        (x[:4],),
        str(path),
        dynamo=True,
        input_names=["x"],
        output_names=[output],
        dynamic_shapes={"x": {0: batch}},
        external_data=False,
        verbose=False,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"x": x.numpy()})[0])


def _pt2(model: nn.Module, path: Path, x: torch.Tensor, output: str) -> torch.Tensor:
    program = torch.export.export(
        model, (x[:4],), dynamic_shapes={"x": {0: torch.export.Dim("batch")}}
    )
    torch.export.save(program, path)
    return torch.export.load(path).module()(x)


def export(cfg: DictConfig) -> Path:
    """Write the file, check it, and return its path."""
    if cfg.format not in FORMATS:
        raise UserError(f"format must be one of {', '.join(FORMATS)}, got {cfg.format!r}")
    ckpt = load_checkpoint(cfg.ckpt_path)
    model, task = load_trained(ckpt, "export")
    out = Path(cfg.output or Path(cfg.paths.output_dir) / f"model.{cfg.format}")
    tmp = out.with_name(f".{out.stem}.tmp.{cfg.format}")
    x = grid(n_in=len(input_names(ckpt, model)))
    quiet_known_warnings()
    try:
        with torch.no_grad():
            write = _onnx if cfg.format == "onnx" else _pt2
            got = write(model, tmp, x, OUTPUT.get(task.name, "output"))
            diff = (got - model(x)).abs().max().item()
        if not diff <= TOLERANCE:
            raise UserError(f"exported model differs from PyTorch by {diff:.2e} > {TOLERANCE:g}")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)
    log.info("wrote %s", out)
    log.info("max |exported - pytorch| on a %d-point grid: %.2e", len(x), diff)
    return out


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="export")
def main(cfg: DictConfig) -> None:
    run_app(export, cfg)


if __name__ == "__main__":
    main()
