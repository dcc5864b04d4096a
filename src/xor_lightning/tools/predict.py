"""Use a trained model on new points: `xor-predict ckpt_path=<file> points=... | input=...`
(`python -m xor_lightning.tools.predict`).

Prints a CSV table on stdout (log lines go to stderr): the inputs, under the training
file's column names (x1, x2, ... for the toy problems), then what the task reads out:
`prob,label` (binary), `prob_0,...,prob_{K-1},label` (multiclass, the label the most
probable class) or `prediction` (regression). `output=<file>` writes the same table there.
A CSV input streams through in batches, so a million rows need little memory; it is
checked whole before anything is written, so a bad row never leaves half a table behind.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from xor_lightning.checkpoint import load_checkpoint
from xor_lightning.config import CONF_DIR, run_app
from xor_lightning.csvdata import csv_rows, feature_names, number
from xor_lightning.errors import UserError
from xor_lightning.tools.trained import input_names, load_trained

log = logging.getLogger(__name__)


def cli_points(points: Any, n: int = 2, columns: tuple[str, ...] = ()) -> list[tuple[float, ...]]:
    """`points=[[x1,x2],...]` from the command line (n numbers each), validated."""
    columns = columns or feature_names(n)
    names = ",".join(columns)
    if not isinstance(points, list) or not points:
        raise UserError(
            f"points must be a non-empty list of [{names}] lists, e.g. "
            f"'points=[[{','.join(['0.5'] * n)}]]'"
        )
    rows = []
    for i, p in enumerate(points):
        if not isinstance(p, list) or len(p) != n:
            what = "a pair" if n == 2 else f"{n} numbers"
            raise UserError(f"points[{i}]: expected {what} [{names}], got {p!r}")
        rows.append(tuple(number(str(v), f"points[{i}]", columns) for v in p))
    return rows


def chunks(rows: Iterator[tuple[float, ...]], size: int) -> Iterator[list[tuple[float, ...]]]:
    chunk: list[tuple[float, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def predict(cfg: DictConfig) -> int:
    """Write the table; return the number of points."""
    if (cfg.points is None) == (cfg.input is None):
        raise UserError("give exactly one of points=[[x1,x2],...] or input=<file.csv>")
    if cfg.batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {cfg.batch_size}")
    ckpt = load_checkpoint(cfg.ckpt_path)
    model, task = load_trained(ckpt, "predict")
    columns = input_names(ckpt, model)
    if cfg.points is not None:
        points = cli_points(OmegaConf.to_container(cfg.points), len(columns), columns)

        def rows() -> Iterator[tuple[float, ...]]:
            return iter(points)
    else:
        path = Path(cfg.input)
        n_checked = sum(1 for _ in csv_rows(path, columns))  # first pass: refuse bad input
        log.info("%s: %d points", path, n_checked)

        def rows() -> Iterator[tuple[float, ...]]:
            return csv_rows(path, columns)

    out_path = Path(cfg.output) if cfg.output else None
    tmp = out_path.with_name(f".{out_path.name}.tmp") if out_path else None
    sinks: list[IO[str]] = [sys.stdout]
    if tmp:
        sinks.append(tmp.open("w"))
    n = 0
    try:
        header = ",".join((*columns, *task.columns()))
        for sink in sinks:
            sink.write(header + "\n")
        with torch.inference_mode():
            for chunk in chunks(rows(), cfg.batch_size):
                out = task.rows(model(torch.tensor(chunk, dtype=torch.float32)))
                lines = "".join(
                    ",".join(map(repr, row)) + "," + ",".join(map(_cell, values)) + "\n"
                    for row, values in zip(chunk, out, strict=True)
                )
                for sink in sinks:
                    sink.write(lines)
                n += len(chunk)
    except BaseException:
        if tmp:
            sinks[1].close()
            tmp.unlink(missing_ok=True)
        raise
    if tmp and out_path:
        sinks[1].close()
        os.replace(tmp, out_path)
        log.info("wrote %d rows to %s", n, out_path)
    sys.stdout.flush()
    return n


def _cell(value: Any) -> str:
    return f"{value:.6f}" if isinstance(value, float) else str(value)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
def main(cfg: DictConfig) -> int:
    return run_app(predict, cfg)


if __name__ == "__main__":
    main()
