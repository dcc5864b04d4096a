"""What each job of a stacked fit leaves in its dir: what its own run would have left.

`checkpoints/` (best and last, written by a run's own Trainer: `checkpoints.py`),
`metrics.json`, `job.json`, `train.log` and TensorBoard curves, from the job's slice of
the group's results.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import yaml
from lightning.pytorch.callbacks import Checkpoint
from torch import Tensor

from xor_vectorized import app, tensorboard
from xor_vectorized.checkpoints import CheckpointWriter, best_filename
from xor_vectorized.fit import GroupResult, snapshot
from xor_vectorized.forks import fork_map

log = logging.getLogger(__name__)
metric_text, printed = (app.function("callbacks", f) for f in ("metric_text", "printed"))
write_json = app.function("files", "write_json")


def job_record(job: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """What `job.json` holds, as `train.sweep_job` writes it for a job of any other launcher."""
    record = {"job": job.num, "overrides": job.overrides, "config": job.digest}
    record.update(status="ok", error=None)
    record.update(fields)
    record.update(threads=torch.get_num_threads(), slurm_job_id=os.environ.get("SLURM_JOB_ID"))
    return record


def record_job(job: Any, fields: dict[str, Any]) -> None:
    """Write the job's `job.json` (`job_record`)."""
    job.dir.mkdir(parents=True, exist_ok=True)
    write_json(job.dir / "job.json", job_record(job, fields))


def adam_slice(stacked: list[dict[str, Tensor]], net: Any, k: int) -> list[dict[str, Tensor]]:
    """Model k's Adam state per parameter, shaped as its own optimizer holds it (plain SGD
    keeps none)."""
    if not any(stacked):
        return [{} for _ in stacked]
    avg = net.take([s["exp_avg"] for s in stacked], k)
    sq = net.take([s["exp_avg_sq"] for s in stacked], k)
    return [
        {"step": s["step"][k].clone(), "exp_avg": a, "exp_avg_sq": q}
        for s, a, q in zip(stacked, avg, sq, strict=True)
    ]


def at_epoch(
    result: GroupResult, key: str, k: int, epoch: int, before: bool = False
) -> float | None:
    """Model k's latest value of `key` logged at `epoch` (or before it)."""
    epochs, values = result.series(key)
    i = int(np.searchsorted(epochs, epoch, side="left" if before else "right"))
    return float(values[i - 1, k]) if i > 0 else None


def write_group(jobs: list[Any], result: GroupResult, info: dict[str, Any], workers: int) -> None:
    """Every job's dir, written by up to `workers` forked processes (they share `result`)
    from 128 jobs on: a process costs ~0.3 s to start, about what writing 64 jobs costs."""
    for key in result.curves:
        result.series(key)  # once, before the workers fork
    writers: dict[int, CheckpointWriter] = {}  # one per process, built on its first job

    def write(k: int) -> None:
        if os.getpid() not in writers:
            writers[os.getpid()] = CheckpointWriter(jobs[0].resolved)
        write_job(jobs[k], k, result, writers[os.getpid()], info)

    workers = min(workers, len(jobs) // 64)
    if workers > 1:
        log.info("writing %d job dirs in %d worker processes", len(jobs), workers)
    fork_map(write, range(len(jobs)), workers)


class PeriodicSave(Checkpoint):
    """Every job's checkpoints every `every_n_epochs` epochs, for crash safety (a sweep
    killed outright then resumes from them); by default only the end of a fit saves them.
    A `Checkpoint`, so that Lightning calls it after the module's own epoch end (which
    records the epoch's training metrics)."""

    def __init__(self, jobs: list[Any], every_n_epochs: int, workers: int) -> None:
        self.jobs, self.every_n_epochs, self.workers = jobs, every_n_epochs, workers

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            info = {"group": -1, "models": len(self.jobs), "fit_s": 0.0, "final": False}
            write_group(self.jobs, snapshot(trainer, pl_module), info, self.workers)


@dataclass
class Outcome:
    """What job k's slice of a fit amounts to, before anything is written: its `job.json`
    fields, its `metrics.json` (None unless it finished), the epoch and loop state its
    `last.ckpt` is at, its latest metrics, its best checkpoint (path, score, the metrics
    its ModelCheckpoint saw) and whether it was tested."""

    fields: dict[str, Any]
    metrics: dict[str, float] | None
    final: int
    loops: dict[str, Any]
    latest: dict[str, float]
    best: tuple[Path, float, dict[str, float]] | None
    tested: bool


def outcome(job: Any, k: int, result: GroupResult, info: dict[str, Any]) -> Outcome:
    """Job k's `Outcome` (`info["final"]` False: a periodic save during the fit, `running`)."""
    cfg = job.resolved
    stopped = int(result.stopped_at[k])  # an Optuna pruner stopped it after this epoch
    final = stopped if stopped >= 0 else max(result.epoch - 1, 0)
    loops = result.stopped_loops[stopped] if stopped >= 0 else result.loops
    latest = {key: at_epoch(result, key, k, final) for key in result.curves}
    latest = {key: v for key, v in latest.items() if v is not None}
    best, best_epoch = None, -1
    if result.best and int(result.best["epoch"][k]) >= 0:
        epoch, step = int(result.best["epoch"][k]), int(result.best["step"][k])
        best_epoch = epoch
        path = Path(cfg["paths"]["ckpt_dir"]) / best_filename(cfg, epoch, step)
        # What the best checkpoint's ModelCheckpoint saw: this validation, and the epoch
        # before's training (this epoch's when it saves at the epoch's end).
        before = not result.extra.get("best_at_epoch_end")
        seen = {
            key: at_epoch(result, key, k, epoch, before=before and key.startswith("train/"))
            for key in result.curves
        }
        seen = result.best["metrics"].get(k) or {key: v for key, v in seen.items() if v is not None}
        best = (path, float(result.best["score"][k]), seen)
    fields: dict[str, Any] = {"wall_s": info["fit_s"], "vectorized": info}
    metrics = None
    failed_epoch, failed_step = (int(v) for v in result.failed_at[k])
    if not info.get("final", True):  # a periodic save: resumable if the process dies
        fields["status"] = "running"
    elif result.signal is not None:
        fields["status"] = "interrupted"
    elif failed_epoch >= 0:
        fields["status"] = "failed"
        kept = f"its best checkpoint is from epoch {best_epoch}" if best else "no best yet"
        fields["error"] = (
            f"NonFiniteLossError: the loss became {float(result.failed_loss[k]):g} at epoch "
            f"{failed_epoch}, optimizer step {failed_step}: this model stopped there (its last "
            f"checkpoint holds its weights before that step; {kept}), the others went on "
            "(try a smaller model.optimizer.lr)"
        )
    else:
        names = ("loss", *result.metric_names)
        metrics = {
            "train/loss": latest.get("train/loss", math.nan),
            **{f"val/{m}": best[2].get(f"val/{m}", math.nan) if best else math.nan for m in names},
            **{f"test/{m}": float(result.tested[f"test/{m}"][k]) for m in names},
        }
        if stopped >= 0:
            fields["status"] = "pruned"
    if best and info.get("final", True):
        fields["best_epoch"] = int(result.best["epoch"][k])
    tested = fields.get("status", "ok") in ("ok", "pruned") and not result.signal
    return Outcome(fields, metrics, final, loops, latest, best, tested)


def write_job(
    job: Any, k: int, result: GroupResult, writer: CheckpointWriter, info: dict[str, Any]
) -> None:
    """Job k's checkpoints, metrics.json, job.json and train.log (only the first three, with
    status `running`, for a periodic save during the fit: `info["final"]` False)."""
    cfg, net = job.resolved, result.net
    done = outcome(job, k, result, info)
    best = done.best
    if best:
        epoch = int(result.best["epoch"][k])
        weights = net.take(result.best["params"], k)
        writer.load(cfg, weights, adam_slice(result.best["state"], net, k))
        writer.save(best[0], result.best["loops"][epoch], best[2], (best[0], best[1], best[1]))
    _drop_stale_bests(Path(cfg["paths"]["ckpt_dir"]), best[0] if best else None)
    writer.load(cfg, net.take(result.last, k), adam_slice(result.last_state, net, k))
    # ModelCheckpoint's `current_score` is the score it last saved (top-1: the best's)
    saved = (best[0], best[1], best[1]) if best else None
    writer.save(Path(cfg["paths"]["ckpt_dir"]) / "last.ckpt", done.loops, done.latest, saved)
    if not info.get("final", True):
        record_job(job, done.fields)
        return
    if done.metrics is not None:
        write_json(job.dir / "metrics.json", done.metrics)
    # hparams.yaml as TensorBoardLogger saves it: the module's and the datamodule's
    trainer = writer.trainer
    hparams = {**trainer.lightning_module.hparams, **trainer.datamodule.hparams}
    (job.dir / "hparams.yaml").write_text(yaml.dump(hparams, Dumper=yaml.CDumper, sort_keys=False))
    tensorboard.write_job(job, k, result, done.final, best, done.tested)
    record_job(job, done.fields)
    _train_log(job, k, result, info, best, done.fields)


def _drop_stale_bests(ckpt_dir: Path, best: Path | None) -> None:
    """Keep one best checkpoint, as a run's `ModelCheckpoint(save_top_k=1)` does: an earlier
    best (from a periodic save, or from before a resume) goes once a later one is written.
    A job's checkpoints dir holds only its own `last.ckpt` and best."""
    if not ckpt_dir.is_dir():
        return
    for entry in os.scandir(ckpt_dir):
        mine = entry.name == "last.ckpt" or (best is not None and entry.name == best.name)
        if entry.name.endswith(".ckpt") and not mine:
            os.unlink(entry.path)


def _train_log(
    job: Any, k: int, result: GroupResult, info: dict[str, Any], best: Any, record: dict[str, Any]
) -> None:
    """`train.log`: the lines a run alone logs, from the job's slice of the fit."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    name = str(job.resolved["model"]["net"]["_target_"]).rsplit(".", 1)[-1]
    lines = [
        f"model: {name}, {result.net.n_params(k)} learnable parameters",
        f"run dir: {job.dir}",
        f"trained in one fit of {info['models']} models (hydra/launcher=vectorized, "
        f"group {info['group']})",
    ]
    every = (job.resolved.get("callbacks") or {}).get("epoch_printer", {}) or {}
    every = every.get("every_n_epochs", 100)
    stopped = int(result.stopped_at[k])
    last = stopped if stopped >= 0 else result.epoch - 1
    for e in result.series("train/loss")[0].tolist():
        if e <= last and every > 0 and (e % every == 0 or e == last):
            keys = printed(key for key in result.curves if key != "train/lr")
            values = {key: at_epoch(result, key, k, e) for key in keys}
            lines.append(
                f"epoch {e:4d}  "
                + "  ".join(metric_text(key, x) for key, x in values.items() if x is not None)
            )
    if record.get("status", "ok") == "ok" and best:
        monitor = (job.resolved.get("task") or {}).get("monitor", "val/acc")
        tested = [*result.metric_names, "loss"]  # as a run's last line: the loss last
        lines.append(
            f"best {monitor} {best[2].get(monitor, math.nan):.4f} ({best[0].name})  "
            + "  ".join(f"test/{m} {float(result.tested[f'test/{m}'][k]):.4f}" for m in tested)
        )
    elif record.get("error"):
        lines.append(f"error: {record['error']}")
    logger = f"{app.name()}.train"  # the logger a run alone logs these lines with
    text = "".join(f"[{stamp}][{logger}][INFO] {line}\n" for line in lines)
    with open(job.dir / "train.log", "a") as f:
        f.write(text)
