"""TensorBoard as a learner reads it: one `loss` chart and one `acc` chart per run.

`StageLogger` is Lightning's `TensorBoardLogger` with one change, Keras's layout: a metric
`stage/name` is written as tag `name` of the sub-run `stage` (a subdirectory of the run
dir). TensorBoard then draws one chart per name with `train` and `val` as two lines (and
`test` and `best` as points), the view that shows over- and under-fitting. Lightning's
`epoch` counter is not written: it is the x-axis already, as a straight line.

`log_session` writes the HPARAMS records: the composed config's hyperparameters (every
value of its `data`, `model` and `scheduler` sections, the seed and the epochs, whatever
network and data they describe), the run's own override keys first, and the metrics the
summary reports, read from the `best` and `test`
sub-runs, so their values are points on the same charts rather than charts of their own.

Outside a Trainer (one writer per job dir, any number of jobs)::

    logger = StageLogger(job_dir)
    logger.log_metrics({"train/loss": 0.31, "train/acc": 0.9}, step=5)
    logger.finalize("success")  # flushes and closes every sub-run's file
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

# What HPARAMS shows of every run (after the run's own override keys): these keys, and every
# value under these sections; a class (`_target_`) as its name, e.g. model.optimizer: Adam.
HPARAMS = ["seed", "trainer.max_epochs"]
HPARAM_SECTIONS = ["data", "model", "scheduler"]
NOT_HPARAMS = {"model.steps_per_call"}  # how the work is cut, not what is learned
# The summary's metrics: the best checkpoint's validation scores, then its test scores.
SUMMARY_METRICS = {"best/acc": "best val/acc", "best/loss": "its val/loss",
                   "test/acc": "test/acc", "test/loss": "test/loss"}  # fmt: skip


def summary_metrics(metrics: Mapping[str, float], monitor: str = "val/acc") -> dict[str, str]:
    """The HPARAMS metric columns of a run's `metrics`: the best checkpoint's validation
    scores (`best/<name>`, the monitored one first, as "best val/<name>"), then the test's."""
    val = sorted((k for k in metrics if k.startswith("val/")), key=lambda k: k != monitor)
    columns = {f"best/{k[4:]}": ("best " if k == monitor else "its ") + k for k in val}
    return columns | {k: k for k in metrics if k.startswith("test/")}


class StageLogger(TensorBoardLogger):
    """`TensorBoardLogger` writing `stage/name` as tag `name` of sub-run `stage`.

    Event files go straight into `save_dir` (no `name`/`version` subdirectories), so
    TensorBoard names each run by its dir. Images, histograms and metrics without a
    slash go to the run itself (`experiment`). `epoch_step` maps each epoch to the step
    its metrics were logged at, for points that belong to an epoch (the best checkpoint).
    """

    def __init__(self, save_dir: str, name: str = "", version: str = "", **kwargs: Any) -> None:
        kwargs.setdefault("default_hp_metric", False)
        super().__init__(save_dir, name=name, version=version, **kwargs)
        self._stages: dict[str, SummaryWriter] = {}
        self._saved = -math.inf  # when `save` last flushed
        self.epoch_step: dict[int, int] = {}

    def stage(self, name: str) -> SummaryWriter:
        """The writer of sub-run `name`, opened on first use."""
        if name not in self._stages:
            from torch.utils.tensorboard import SummaryWriter

            self._stages[name] = SummaryWriter(os.path.join(self.log_dir, name))
        return self._stages[name]

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        if "epoch" in metrics and step is not None:
            self.epoch_step[int(metrics["epoch"])] = step
        plain = {}
        for key, value in metrics.items():
            stage, _, name = key.partition("/")
            if name:
                self.stage(stage).add_scalar(name, float(value), step)
            elif key != "epoch":
                plain[key] = value
        if plain:
            super().log_metrics(plain, step)

    @rank_zero_only
    def log_session(
        self,
        hparams: Mapping[str, Any],
        metrics: Mapping[str, str] = SUMMARY_METRICS,
        swept: Collection[str] = (),
    ) -> None:
        """HPARAMS records for this run (see `session_summaries`)."""
        from torch.utils.tensorboard.writer import FileWriter

        writer = FileWriter(self.log_dir)
        for summary in session_summaries(hparams, metrics, swept):
            writer.add_summary(summary)
        writer.close()

    @rank_zero_only
    def save(self) -> None:
        # Lightning saves after every logging call: flushing every file then costs more
        # than the epoch. At most once a second is live enough; closing flushes the rest.
        if time.monotonic() - self._saved < 1.0:
            return
        self._saved = time.monotonic()
        super().save()
        for writer in self._stages.values():
            writer.flush()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        super().finalize(status)
        for writer in self._stages.values():
            writer.close()
        self._stages.clear()  # a later metric (the test) opens a new file


def session_summaries(
    hparams: Mapping[str, Any],
    metrics: Mapping[str, str] = SUMMARY_METRICS,
    swept: Collection[str] = (),
) -> list[Any]:
    """The HPARAMS records of a run: `hparams` (bool, number or str), listed with the `swept`
    ones first, and `metrics` (`stage/name`: display name), which TensorBoard reads as the
    last value of tag `name` in sub-run `stage`."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import api_pb2, metadata
    from tensorboard.plugins.hparams import plugin_data_pb2 as pd

    start = pd.SessionStartInfo(start_time_secs=time.time())
    infos = []
    for key, value in hparams.items():
        if isinstance(value, bool):
            start.hparams[key].bool_value, kind = value, api_pb2.DATA_TYPE_BOOL
        elif isinstance(value, (int, float)):
            start.hparams[key].number_value, kind = value, api_pb2.DATA_TYPE_FLOAT64
        else:
            start.hparams[key].string_value, kind = str(value), api_pb2.DATA_TYPE_STRING
        # TensorBoard lists hparams that differ first and shows the first five.
        infos.append(api_pb2.HParamInfo(name=key, type=kind, differs=key in swept))
    names = [(key.partition("/"), shown) for key, shown in metrics.items()]
    experiment = api_pb2.Experiment(
        hparam_infos=infos,
        metric_infos=[
            api_pb2.MetricInfo(name=api_pb2.MetricName(group=g, tag=t), display_name=shown)
            for (g, _, t), shown in names
        ],
    )
    end = pd.SessionEndInfo(status=api_pb2.STATUS_SUCCESS, end_time_secs=time.time())
    return [
        Summary(value=[Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(data))])
        for tag, data in (
            (metadata.EXPERIMENT_TAG, pd.HParamsPluginData(experiment=experiment)),
            (metadata.SESSION_START_INFO_TAG, pd.HParamsPluginData(session_start_info=start)),
            (metadata.SESSION_END_INFO_TAG, pd.HParamsPluginData(session_end_info=end)),
        )
    ]


def session_hparams(
    cfg: Mapping[str, Any], overrides: Sequence[str]
) -> tuple[dict[str, Any], list[str]]:
    """The run's hyperparameters for HPARAMS and the keys it set itself (its overrides),
    those first: in a sweep they are the swept keys, the columns worth seeing."""
    own: dict[str, Any] = {}
    for override in overrides:
        key, _, text = override.lstrip("+").partition("=")
        if not key.startswith(("~", "hydra", "paths", "resume", "ckpt_path")):
            value = _select(cfg, key)  # a group (data=csv): its name
            group = value is None or OmegaConf.is_config(value) or isinstance(value, Mapping)
            if key.endswith("._target_"):
                value = str(value).rsplit(".", 1)[-1]
            own[_name(key)] = text if group else value
    overridden = set(own)
    composed = {k: _select(cfg, k) for k in HPARAMS[:1]}
    for section in HPARAM_SECTIONS:
        node = _select(cfg, section)
        if OmegaConf.is_config(node):
            node = OmegaConf.to_container(node, resolve=True)
        composed |= _leaves(node, section) if isinstance(node, Mapping) else {}
    composed |= {k: _select(cfg, k) for k in HPARAMS[1:]}
    if "data.batch_size" in composed:
        composed["data.batch_size"] = composed["data.batch_size"] or "full"
    for key, value in composed.items():
        if key in own or value is None or key in NOT_HPARAMS:
            continue
        own.setdefault(key, value if isinstance(value, (bool, int, float, str)) else str(value))
    return own, [k for k in own if k in overridden]


def _leaves(node: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """`prefix.key: value` for every value under `node`; a `_target_` as its class's name
    under the key of its node; `model.net.x` is left out where `model.x` holds the same."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "_target_":
            out[prefix] = str(value).rsplit(".", 1)[-1]
        elif isinstance(value, Mapping):
            out |= _leaves(value, f"{prefix}.{key}")
        elif not str(key).startswith("_"):
            out[f"{prefix}.{key}"] = value
    return {
        k: v
        for k, v in out.items()
        if not (k.startswith("model.net.") and out.get("model." + k[10:], object()) == v)
    }


def _select(cfg: Mapping[str, Any], key: str) -> Any:
    """`OmegaConf.select` for a config or a plain (resolved) dict: None when absent."""
    if isinstance(cfg, DictConfig):
        return OmegaConf.select(cfg, key, default=None)
    for part in key.split("."):
        if not isinstance(cfg, Mapping) or part not in cfg:
            return None
        cfg = cfg[part]
    return cfg


def _name(key: str) -> str:
    return key.removesuffix("._target_")
