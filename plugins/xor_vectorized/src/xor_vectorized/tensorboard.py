"""A stacked fit's TensorBoard files, written without a Trainer.

Each job's: the layout a run's `StageLogger` writes (sub-runs `train`, `val`, `test` and
`best` with the tags `loss` and the task's metrics, `acc` say, and `lr` in `train`), the
HPARAMS records, and for
small groups the pictures and weight histograms, in the job's dir. The fit's summary
(`write_summary`): the mean and the 10th and 90th percentiles of every job's curves, a
few runs at the sweep's root that TensorBoard can show when it has too many job runs to
select them all. Each file is written in one go with TensorBoard's record writer: a
`SummaryWriter` per sub-run starts a thread and costs milliseconds, which a sweep of a
thousand jobs would pay four thousand times.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from xor_vectorized import app

# The app's TensorBoard record writers (`sweeps/tb_summary.py`): its runs' format.
scalar, write_events, write_runs = (
    app.function("sweeps.tb_summary", f) for f in ("scalar", "write_events", "write_runs")
)


def _tensorflow_bins() -> list[float]:
    """The histogram bins `SummaryWriter.add_histogram` means by `bins="tensorflow"`."""
    v, buckets = 1e-12, []
    while v < 1e20:
        buckets.append(v)
        v *= 1.1
    return [-b for b in reversed(buckets)] + [0.0] + buckets


TF_BINS = _tensorflow_bins()


def write_run(
    run_dir: Path,
    points: dict[str, list[tuple[int, float]]],
    session: list[Any],
    extras: list[tuple[Any, int]] = (),  # type: ignore[assignment]
) -> None:
    """`points`: `stage/name` -> [(step, value)], as the run logged them; `session`: the
    HPARAMS summaries; `extras`: pictures and histograms for the run itself."""
    stages: dict[str, list[tuple[Any, int]]] = {}
    for key, series in points.items():
        stage, _, name = key.partition("/")
        stages.setdefault(stage, []).extend((scalar(name, v), step) for step, v in series)
    for stage, events in stages.items():
        write_events(run_dir / stage, events)
    write_events(run_dir, [(s, 0) for s in session] + list(extras))


def logs_to_tensorboard(cfg: dict[str, Any]) -> bool:
    """Whether a run of this resolved config writes TensorBoard files (its `logger`s)."""
    return any(str((lg or {}).get("_target_", "")).endswith(("StageLogger", "TensorBoardLogger"))
               for lg in (cfg.get("logger") or {}).values())  # fmt: skip


def write_summary(sweep_dir: Path, name: str, result: Any) -> Path:
    """The fit's jobs summarised per epoch, as runs `<sweep_dir>/tb/<name>/{mean,p10,p90}`
    with the tags `loss/train`, `loss/val`, `acc/train`, `acc/val` (the task's metrics:
    TensorBoard's landing page opens the `acc` and `loss` groups), and `models/train`,
    `models/val` in `mean`: how many models each epoch's statistics are over. A model is in
    an epoch's statistics while it trains (until the epoch its loss became non-finite, up to
    the epoch an Optuna pruner stopped it after) and while its metrics there are finite. Steps are
    the jobs' own (Lightning's logging step), so the summary lines up with their curves.
    Written anew each time: the runs hold this fit's epochs. Returns `<sweep_dir>/tb/<name>`."""
    from xor_vectorized.fit import logging_step

    failed = result.failed_at[:, 0].numpy()  # the epoch a model's loss became non-finite
    stopped = result.stopped_at.numpy()  # the last epoch a pruned model trained
    stages = {}
    for stage in ("train", "val"):
        series = {m: result.series(f"{stage}/{m}") for m in ("loss", *result.metric_names)}
        epochs = series["loss"][0]
        if not len(epochs) or any(not np.array_equal(epochs, e) for e, _ in series.values()):
            continue
        e = epochs[:, None]
        training = ((failed < 0) | (e < failed)) & ((stopped < 0) | (e <= stopped))
        values = {m: v for m, (_, v) in series.items()}
        stages[stage] = (logging_step(result, epochs), values, training)
    summary_dir = app.read("sweeps.tb_summary").SUMMARY_DIR
    return write_runs(Path(sweep_dir) / summary_dir / name, stages)


def write_job(job: Any, k: int, result: Any, final: int, best: Any, tested: bool) -> None:
    """Job k's curves and HPARAMS (and, for a small group, its pictures), as its run's
    `StageLogger` and picture callbacks would have written them."""
    from xor_vectorized.fit import logging_step

    tb = app.read("tb_logger")  # the HPARAMS records, as the app's run writes them

    cfg = job.resolved
    if not logs_to_tensorboard(cfg):
        return
    every = result.extra.get("curve_every", 1)
    step = lambda epoch: int(logging_step(result, epoch))  # noqa: E731
    points: dict[str, list[tuple[int, float]]] = {}
    failed = int(result.failed_at[k][0])  # its run alone stops in that epoch, unlogged
    for key in result.curves:
        epochs, values = result.series(key)
        if not len(epochs):
            continue
        keep = (epochs <= final) & (
            (epochs % every == 0) | (epochs == final) | key.startswith("val")
        )
        if failed >= 0:
            keep &= epochs < failed
        kept = zip(epochs[keep].tolist(), values[keep, k].tolist(), strict=True)
        points[key] = [(step(e), v) for e, v in kept]
    session = []
    names = ("loss", *result.metric_names)
    if best is not None:
        epoch = int(result.best["epoch"][k])
        for name in names:
            points[f"best/{name}"] = [(step(epoch), best[2].get(f"val/{name}", float("nan")))]
    if tested:
        for name in names:
            points[f"test/{name}"] = [(step(final) + 1, float(result.tested[f"test/{name}"][k]))]
        params, swept = tb.session_hparams(cfg, job.overrides)
        columns = {f"{stage}/{name}": 0.0 for stage in ("val", "test") for name in names}
        monitor = (cfg.get("task") or {}).get("monitor", "val/acc")
        session = tb.session_summaries(params, tb.summary_metrics(columns, monitor), swept=swept)
    extras = pictures(job, k, result) if "data" in result.extra else []
    write_run(job.dir, points, session, extras)


def pictures(job: Any, k: int, result: Any) -> list[tuple[Any, int]]:
    """The job's TensorBoard images and histograms from the fit's snapshots, and its
    `boundary.png` and `hidden_units.png` of the tested model, drawn by its own callbacks."""
    import torch
    from hydra.utils import instantiate
    from torch.utils.tensorboard import summary

    plot = app.read("pictures.plot")

    cfg, stacked = job.resolved, result.net
    data = {split: (X[k], y[k]) for split, (X, y) in result.extra["data"].items()}
    callbacks = {name: instantiate(c) for name, c in (cfg.get("callbacks") or {}).items()
                 if c and name in ("boundary_plot", "hidden_units_plot", "histograms")}  # fmt: skip
    net = app.read("targets").make_net(cfg["model"]["net"])
    task = app.read("tasks").make_task(cfg.get("task"))
    for cb in callbacks.values():  # what a run's callbacks read from its module
        cb.task = task
    for name in ("boundary_plot", "hidden_units_plot"):  # pictures of the plane only (2 inputs)
        if name in callbacks and callbacks[name].why_not(net, data["train"][0]) is not None:
            del callbacks[name]
    extent = (
        plot.plane_extent(torch.cat([X for X, _ in data.values()]))
        if data["train"][0].shape[1] == 2
        else None
    )

    def load(weights: list[Any]) -> Any:
        net.load_state_dict(dict(zip(stacked.names, stacked.take(weights, k), strict=True)))
        return net.eval()

    events: list[tuple[Any, int]] = []
    for epoch, step, weights, grads in result.extra["snapshots"]:
        load(weights)
        for name in ("boundary_plot", "hidden_units_plot"):
            cb = callbacks.get(name)
            if cb is not None and (epoch % cb.every_n_epochs == 0 or epoch == result.epoch - 1):
                cb.extent = extent
                image = cb.image(net, *data["train"])
                events.append((plot.png_summary(cb.tag, image), step))
        hist = callbacks.get("histograms")
        if hist is not None and (epoch % hist.every_n_epochs == 0 or epoch == result.epoch - 1):
            for (name, _), w, g in zip(net.named_parameters(), stacked.take(weights, k),
                                       stacked.take(grads, k), strict=True):  # fmt: skip
                for tag, values in ((f"weights/{name}", w), (f"weights/{name}.grad", g)):
                    kept = values[values.abs() < 1e20]
                    if len(kept):
                        events.append((summary.histogram(tag, kept, TF_BINS), step))
    if result.tested and result.best:
        load(result.best["params"])  # the tested model, on the test points
        tested = {f"test/{m}": float(result.tested[f"test/{m}"][k]) for m in result.metric_names}
        score = app.read("callbacks").test_score(tested)
        for name in ("boundary_plot", "hidden_units_plot"):
            cb = callbacks.get(name)
            if cb is not None:
                cb.extent = extent
                cb.save(net, *data["test"], job.dir / cb.filename, score)
    return events
