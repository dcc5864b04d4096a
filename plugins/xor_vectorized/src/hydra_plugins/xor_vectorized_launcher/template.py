"""Every job of one shape from one composition: its plain configs, dir, `.hydra/` files,
checks and group, as `Preparation.alone` makes them from a composition of its own.

The first job of a shape is composed and prepared in full (`prepare.py`); its config is
then the template. Another job of the shape differs from it only at its value keys (set as
Hydra sets them: `shapes.plain_keys` has checked that the nodes take any value as it is),
at its own `hydra.job.*`, `hydra.overrides.task` and `hydra.runtime.output_dir`, and in the
interpolations that read any of those (`interpolations.varying`). Those interpolations are
evaluated for each job (text and references here, anything else by OmegaConf on the
template with the job's values set); every other value is the template's. The checks a run
alone makes (`validate_train`) run on the job's resolved values. tests/test_composition.py
compares every field of every job with the full preparation's.
"""

from __future__ import annotations

import pickle
from pathlib import Path as FsPath
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from hydra_plugins.xor_sweeper.shapes import Shape, parse, plain_keys
from hydra_plugins.xor_vectorized_launcher.compose import overrides_dirname
from hydra_plugins.xor_vectorized_launcher.interpolations import (
    ABSENT,
    Path,
    analyse,
    dotted,
    evaluate,
    get_path,
    put,
    strings,
    unsafe,
    varying,
)

NUM, ID = ("hydra", "job", "num"), ("hydra", "job", "id")
DIRNAME, TASK = ("hydra", "job", "override_dirname"), ("hydra", "overrides", "task")
OUTPUT = ("hydra", "runtime", "output_dir")
SWEEP_DIR, SUBDIR = ("hydra", "sweep", "dir"), ("hydra", "sweep", "subdir")
# Read once for every job: a template whose jobs could differ in them is not used.
FIXED = (("hydra", "output_subdir"), ("hydra", "sweeper", "study_name"),
         ("hydra", "job", "config", "override_dirname"))  # fmt: skip


class Unusable(Exception):
    """The shape's jobs must each be composed (the reason is the message)."""


class Template:
    def __init__(self, master: DictConfig, cfg: DictConfig, job: Any, resolved: dict[str, Any],
                 hydra_node: dict[str, Any], shape: Shape) -> None:  # fmt: skip
        """`cfg` and `job`: the shape's first job, composed and prepared in full (its
        `resolved` config too, which `job` lacks when a check refused it)."""
        if job.fatal or any(k.isdigit() for key in shape.keys for k in key.split(".")):
            raise Unusable("a refused setting, or a list index among the value keys")
        self.master, self.cfg, self.shape = master, cfg, shape
        self.keys = [tuple(k.split(".")) for k in shape.keys]
        leaves = [analyse(p, s) for p, s in strings(job.unresolved)]
        leaves += [analyse(("hydra", *p), s) for p, s in strings(hydra_node)]
        var = varying(leaves, [*self.keys, NUM, ID, DIRNAME, TASK, OUTPUT])
        self.leaves = {leaf.path: leaf for leaf in leaves if leaf.path in var}
        if any(p[: len(f)] == f or f[: len(p)] == p for p in var for f in FIXED):
            raise Unusable("hydra.output_subdir, study_name or override_dirname vary")
        self.const: dict[Path, Any] = {}
        self.simple = self._simple(resolved)
        for p in (SWEEP_DIR, SUBDIR):
            if p in var and (p not in self.simple or OUTPUT in self._reads(p)):
                raise Unusable(f"{dotted(p)} is an interpolation this template cannot evaluate")
        task = [p for p in self.leaves if p[0] != "hydra"]
        probe = pickle.loads(pickle.dumps(cfg))
        if not plain_keys(probe, [*shape.keys, *(dotted(p) for p in task if p in self.simple)]):
            raise Unusable("a typed node among the value keys or the interpolations")
        self.by_template = [p for p in task if p in self.simple]
        self.by_omegaconf = [p for p in task if p not in self.simple]
        self.raw, self.res = pickle.dumps(job.unresolved), pickle.dumps(resolved)
        self.plain = not unsafe(resolved)  # checked as plain dicts, not on a composition
        self.hydra_node, self.study_name = hydra_node, job.study_name
        self.subdir_name = cfg.hydra.output_subdir
        self.dirname_conf = cfg.hydra.job.config.override_dirname
        self.fixed_dir = {p: str(OmegaConf.select(cfg, dotted(p))) for p in (SWEEP_DIR, SUBDIR)}
        # How the job's number is kept in hydra.job.num and .id (Hydra's schema: int, str)
        self.kinds = [type(OmegaConf.select(cfg, dotted(p))) for p in (NUM, ID)]
        if not set(self.kinds) <= {int, str}:
            raise Unusable("hydra.job.num or hydra.job.id is neither int nor str")
        from xor_vectorized.groups import MLP_VARYING, VARYING, get, mlp_targets, stack_key

        mlp = get(job.unresolved, "model.net._target_") in mlp_targets()
        popped = VARYING if mlp else [k for k in VARYING if k not in MLP_VARYING]
        self.key = stack_key(job.unresolved) if set(shape.keys) <= set(popped) else None

    def _simple(self, resolved: dict[str, Any]) -> set[Path]:
        """The varying leaves evaluated here: text and references to scalar values (a root,
        another such leaf of the task's config, or a value that is the same for every job;
        not a varying `hydra.*` leaf, which Hydra's schema may convert: `sweep.subdir` to a
        string)."""
        roots = {NUM, ID, DIRNAME, OUTPUT, *self.keys}
        simple = {p for p, leaf in self.leaves.items() if leaf.parts is not None}
        changed = True
        while changed:
            changed = False
            for p in list(simple):
                refs = self.leaves[p].refs or []
                if not all(r in roots or (r in simple and r[0] != "hydra")
                           or self._scalar(r, resolved) for r in refs):  # fmt: skip
                    simple.discard(p)
                    changed = True
        return simple

    def _scalar(self, path: Path, resolved: dict[str, Any]) -> bool:
        """Whether `path` holds the same scalar for every job (kept in `self.const`)."""
        if any(path[: len(p)] == p or p[: len(path)] == path for p in [*self.leaves, *self.keys]):
            return False
        if path[0] == "hydra":
            value = OmegaConf.select(self.cfg, dotted(path), default=ABSENT)
        else:
            value = get_path(resolved, path)
        if value is ABSENT or isinstance(value, (dict, list, DictConfig, ListConfig)):
            return False
        if isinstance(value, str) and value == "???":
            return False
        self.const[path] = value
        return True

    def _reads(self, path: Path) -> set[Path]:
        """Every path the evaluated leaf at `path` reads, through the leaves it reads."""
        out: set[Path] = set()
        todo = [path]
        while todo:
            for r in self.leaves[todo.pop()].refs or []:
                if r not in out:
                    out.add(r)
                    todo += [r] if r in self.leaves else []
        return out

    def job(self, num: int, overrides: list[str], values: list[Any]) -> Any:
        """Job `num` of this shape, prepared; None when its values need a composition of
        their own (an interpolation or `???` among them)."""
        from xor_vectorized import app
        from xor_vectorized.groups import get, stack_key, stack_problem
        from xor_vectorized.run import Job

        if unsafe(values):
            return None
        task = [o for o in map(parse, overrides) if not o.is_hydra_override()]
        env: dict[Path, Any] = {NUM: self.kinds[0](num), ID: self.kinds[1](num),
                                TASK: [o.input_line for o in task],
                                DIRNAME: overrides_dirname(task, self.dirname_conf)}  # fmt: skip
        env.update(zip(self.keys, values, strict=True))

        def value(path: Path) -> Any:
            if path not in env:
                leaf = self.leaves.get(path)
                env[path] = evaluate(leaf.parts, value) if leaf else self.const[path]
            return env[path]

        where = [value(p) if p in self.leaves else self.fixed_dir[p] for p in (SWEEP_DIR, SUBDIR)]
        job_dir = FsPath(str(where[0])) / str(where[1])
        env[OUTPUT] = str(job_dir.resolve())
        job = Job(num, overrides, job_dir)
        job.study_name = self.study_name
        raw, res = pickle.loads(self.raw), pickle.loads(self.res)
        for path, v in zip(self.keys, values, strict=True):
            put(raw, path, v)
            put(res, path, v)
        for path in self.by_template:
            put(res, path, value(path))
        if self.by_omegaconf:
            self._load(num, values, env)
            for path in self.by_omegaconf:
                found = OmegaConf.select(self.cfg, dotted(path))
                if isinstance(found, (DictConfig, ListConfig)):
                    found = OmegaConf.to_container(found, resolve=True)
                put(res, path, found)
        if "ddp" in str(get(res, "trainer.strategy", "")):
            job.fatal = (
                "trainer.strategy=ddp cannot run under hydra/launcher=vectorized (it trains "
                "many models in one process); use the basic, joblib or slurm launcher"
            )
            return job
        job.unresolved, job.digest = raw, app.read("files").digest(raw)
        if self.subdir_name is not None:
            h = self.hydra_node
            own = {"num": env[NUM], "id": env[ID], "override_dirname": env[DIRNAME]}
            node = {**h, "job": {**h["job"], **own},
                    "overrides": {**h["overrides"], "task": env[TASK]},
                    "runtime": {**h["runtime"], "output_dir": env[OUTPUT]}}  # fmt: skip
            files = {"config.yaml": raw, "hydra.yaml": {"hydra": node},
                     "overrides.yaml": list(env[TASK])}  # fmt: skip
            job.hydra_files = (job_dir / str(self.subdir_name), files)
        job.error = self._check(res, num, values, env)
        if job.error:
            return job
        job.resolved = res
        job.problem = stack_problem(res)
        job.key = "" if job.problem else self.key or stack_key(raw)
        return job

    def _check(self, res: dict[str, Any], num: int, values: list[Any], env: dict) -> str | None:
        """What a run alone refuses the job for: `validate_train` on its resolved values
        (the app's `plain.py`: the same answer as on its composed config)."""
        from xor_vectorized import app

        varied = [*self.keys, *self.by_template, *self.by_omegaconf]
        cfg: Any = res
        if not self.plain or any(unsafe(get_path(res, p)) for p in varied):
            self._load(num, values, env)  # `???` or `${` would mean another thing in a dict
            cfg = self.cfg
        try:
            app.read("validate").validate_train(cfg)
        except app.read("errors").UserError as e:
            return f"UserError: {e}"
        return None

    def _load(self, num: int, values: list[Any], env: dict[Path, Any]) -> None:
        """The template config made job `num`'s, as its own composition would be."""
        cfg = self.cfg
        OmegaConf.copy_cache(from_config=self.master, to_config=cfg)
        for key, v in zip(self.shape.keys, values, strict=True):
            OmegaConf.update(cfg, key, v, merge=True)
        with open_dict(cfg):
            for path in (NUM, ID, DIRNAME, TASK, OUTPUT):
                OmegaConf.update(cfg, dotted(path), env[path], merge=False)
        HydraConfig.instance().cfg = cfg
