"""A launch's jobs prepared for `xor_vectorized.run`: each one's config composed and
checked as a run alone would check it, its group found; nothing written (its dir is not
the launcher's yet).

A job is prepared in full (`Preparation.alone`: its own composition, about 10 ms) when it
is the first of its shape (`hydra_plugins.xor_sweeper.shapes`) or its shape has no
template; every other job from its shape's template (`template.py`, about 0.3 ms). The
first job of each shape is prepared here, so that forked workers start with every
template. Workers are forked for jobs composed in full only: a templated job costs little
more than sending it back from a worker (0.06 ms), and on 2 shared cores two workers took
longer than one process at every size up to 65,536 templated jobs
(bench/compose_bench.py, which measures these costs).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from hydra_plugins.xor_sweeper.shapes import shape_of
from hydra_plugins.xor_vectorized_launcher.compose import HydraNodes, task_containers

log = logging.getLogger(__name__)
HYDRA_NODES = HydraNodes()
# Seconds a job composed in full costs, and the work that pays for a worker.
FULL_S, WORKER_S = 0.010, 2.0


def workers_for(full: int, workers: int) -> int:
    """How many processes prepare a launch's jobs, `full` of them composed in full (the
    templated ones go along): one per `WORKER_S` of that work."""
    return max(1, min(workers, int(full * FULL_S / WORKER_S)))


class Preparation:
    """One launch's jobs; the templates of their shapes, made as the first job of each comes."""

    def __init__(self, launcher: Any) -> None:
        self.launcher = launcher
        self.choices = set(launcher.config.hydra.runtime.choices)
        self.templates: dict[Any, Any] = {}  # shape -> its Template (None: compose each job)

    def all(self, first: int, overrides: list[list[str]]) -> list[Any]:
        """Every job, in order: each shape's first here, the rest by as many workers as pay."""
        from xor_vectorized.forks import fork_map

        items = [(first + i, o, shape_of(o, self.choices)) for i, o in enumerate(overrides)]
        firsts: dict[Any, int] = {}
        for i, (_, _, found) in enumerate(items):
            if found is not None:
                firsts.setdefault(found[0], i)
        original = HydraConfig.instance().cfg
        try:
            done = {i: self.job(items[i]) for i in firsts.values()}
            rest = [item for i, item in enumerate(items) if i not in done]
            full = sum(f is None or self.templates.get(f[0]) is None for _, _, f in rest)
            workers = workers_for(full, self.launcher.settings["workers"])
            if workers > 1:
                log.info("preparing %d jobs in %d worker processes", len(rest), workers)
            prepared = iter(fork_map(self.job, rest, workers))
            return [done[i] if i in done else next(prepared) for i in range(len(items))]
        finally:
            HydraConfig.instance().cfg = original

    def job(self, item: tuple[int, list[str], Any]) -> Any:
        """The job prepared from its shape's template, or in full."""
        num, overrides, found = item
        template = self.templates.get(found[0]) if found else None
        job = template.job(num, overrides, found[1]) if template and found else None
        if job is None:
            job, cfg, resolved = self.alone(num, overrides)
            if found is not None and found[0] not in self.templates:
                self.templates[found[0]] = self.template(cfg, job, resolved, found[0])
        return job

    def template(self, cfg: DictConfig, job: Any, resolved: Any, shape: Any) -> Any:
        """The shape's template, from its first job; None when its jobs must each be composed."""
        from hydra_plugins.xor_vectorized_launcher.template import Template, Unusable

        if resolved is None:
            return None
        try:
            node = HYDRA_NODES.container(cfg)
            return Template(self.launcher.config, cfg, job, resolved, node, shape)
        except Unusable as e:
            log.debug("jobs like job %d are composed one by one: %s", job.num, e)
            return None

    def alone(self, num: int, overrides: list[str]) -> tuple[Any, DictConfig, Any]:
        """Compose the job's config and check it; write nothing (its dir is not ours yet).
        The job, its composed config and its resolved task config (None: not resolved)."""
        from xor_vectorized import app
        from xor_vectorized.groups import stack_key, stack_problem
        from xor_vectorized.run import Job

        cfg = self.launcher.compose(num, overrides)
        job_dir = Path(str(cfg.hydra.sweep.dir)) / str(OmegaConf.select(cfg, "hydra.sweep.subdir"))
        with open_dict(cfg.hydra.runtime):
            cfg.hydra.runtime.output_dir = str(job_dir.resolve())
        job = Job(num, overrides, job_dir)
        job.study_name = OmegaConf.select(cfg, "hydra.sweeper.study_name", default=None)
        HydraConfig.instance().cfg = cfg  # what run_job does, without copying the config
        if "ddp" in str(OmegaConf.select(cfg, "trainer.strategy", default="")):
            job.fatal = (
                "trainer.strategy=ddp cannot run under hydra/launcher=vectorized (it trains "
                "many models in one process); use the basic, joblib or slurm launcher"
            )
            return job, cfg, None
        task, resolved = task_containers(cfg)
        job.unresolved, job.digest = task, app.read("files").digest(task)
        if cfg.hydra.output_subdir is not None:
            hydra_node = {"hydra": HYDRA_NODES.container(cfg)}
            files = {"config.yaml": task, "hydra.yaml": hydra_node,
                     "overrides.yaml": list(cfg.hydra.overrides.task)}  # fmt: skip
            job.hydra_files = (job_dir / str(cfg.hydra.output_subdir), files)
        try:
            app.read("validate").validate_train(cfg)
        except app.read("errors").UserError as e:
            job.error = f"UserError: {e}"
            return job, cfg, resolved
        job.resolved = resolved
        job.problem = stack_problem(job.resolved)
        job.key = "" if job.problem else stack_key(task)
        return job, cfg, resolved
