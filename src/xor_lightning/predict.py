"""Classify new points: `python -m xor_lightning.predict ckpt_path=<file> points=... | input=...`.

Prints a CSV table `x1,x2,prob,label` on stdout (log lines go to stderr) and writes the
same table to `output=<file>` when given. A CSV input streams through in batches, so a
million rows need little memory; it is checked whole before anything is written, so a bad
row never leaves half a table behind.
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

from xor_lightning.checkpoint import build_net, load_checkpoint
from xor_lightning.config import CONF_DIR, UserError, run_app
from xor_lightning.csvdata import csv_rows, number

log = logging.getLogger(__name__)
HEADER = "x1,x2,prob,label"


def cli_points(points: Any) -> list[tuple[float, float]]:
    """`points=[[x1,x2],...]` from the command line, validated."""
    if not isinstance(points, list) or not points:
        raise UserError(
            "points must be a non-empty list of [x1,x2] pairs, e.g. 'points=[[0.6,-0.7]]'"
        )
    rows = []
    for i, p in enumerate(points):
        if not isinstance(p, list) or len(p) != 2:
            raise UserError(f"points[{i}]: expected a pair [x1,x2], got {p!r}")
        rows.append(tuple(number(str(v), f"points[{i}]") for v in p))
    return rows


def chunks(rows: Iterator[tuple[float, float]], size: int) -> Iterator[list[tuple[float, float]]]:
    chunk: list[tuple[float, float]] = []
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
    net = build_net(ckpt)
    if cfg.points is not None:
        points = cli_points(OmegaConf.to_container(cfg.points))

        def rows() -> Iterator[tuple[float, float]]:
            return iter(points)
    else:
        path = Path(cfg.input)
        n_checked = sum(1 for _ in csv_rows(path))  # first pass: refuse bad input up front
        log.info("%s: %d points", path, n_checked)

        def rows() -> Iterator[tuple[float, float]]:
            return csv_rows(path)

    out_path = Path(cfg.output) if cfg.output else None
    tmp = out_path.with_name(f".{out_path.name}.tmp") if out_path else None
    sinks: list[IO[str]] = [sys.stdout]
    if tmp:
        sinks.append(tmp.open("w"))
    n = 0
    try:
        for sink in sinks:
            sink.write(HEADER + "\n")
        with torch.inference_mode():
            for chunk in chunks(rows(), cfg.batch_size):
                prob = torch.sigmoid(net(torch.tensor(chunk))).squeeze(1).tolist()
                lines = "".join(
                    f"{x1!r},{x2!r},{p:.6f},{int(p >= 0.5)}\n"
                    for (x1, x2), p in zip(chunk, prob, strict=True)
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


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
def main(cfg: DictConfig) -> int:
    return run_app(predict, cfg)


if __name__ == "__main__":
    main()
