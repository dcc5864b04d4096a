"""The app whose runs the engine stacks, and the modules of it that the engine reads.

The engine serves xor-train and every copy of the template under a name of its own
(`docs/template.md`: `xor_lightning` renamed `my_project`, say). The app is the package of
the task function's module: `xor_lightning` for `xor_lightning.train.main`, `my_project`
for `my_project.train.main`. The engine reads a run through that package's own modules,
named here (`read("tasks").make_task`), never through an import of one package: two copies
installed in one environment share this plugin, each stacked with its own code.

What an app offers the engine is `CONTRACT`: the template's modules and what the engine
calls in each (`docs/vectorized.md`, "What the engine reads from an app").
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

ENTRY = ("train", "main")  # a run's entry point: `<app>.train.main`
# module -> what the engine calls in it
CONTRACT: dict[str, tuple[str, ...]] = {
    "train": ("build", "main"),
    "checkpoint": ("make_module",),
    "tasks": ("make_task", "Task"),
    "targets": ("make_net", "target_class", "trusted"),
    "callbacks": (
        "LastCheckpoint",
        "RunInfo",
        "GracefulStop",
        "every_n_or_last",
        "metric_text",
        "printed",
        "test_score",
    ),
    "config": ("quiet_known_warnings", "N_FEATURES_READS"),
    "validate": ("validate_train",),
    "errors": ("UserError", "refuse"),
    "files": ("digest", "read_json", "write_json", "write_atomically"),
    "lock": ("RunDirLock", "hold", "in_use", "let_go", "unwritable", "LOCK_FILE"),
    "model": ("MLP", "ACTIVATIONS"),
    "data": ("SPLITS",),
    "datamodule": ("XORDataModule",),
    "sampler": ("Chunk", "as_index"),
    "module": ("XORModule",),
    "tb_logger": ("session_hparams", "session_summaries", "summary_metrics"),
    "pictures.plot": ("split_points", "plane_extent", "png_summary"),
    "sweeps.summary": ("FITS", "packed_records", "metric_mode", "report", "write_all"),
    "sweeps.tables": ("CURVE_COLUMNS", "curves_table"),
    "sweeps.tb_summary": ("SUMMARY_DIR", "scalar", "write_events", "write_runs"),
}

_package: str | None = None


def package_of(task_function: Any) -> str | None:
    """The app package whose runs the engine can stack, from the sweep's task function: a
    function `main` of a module `<package>.train` (imported, or run as `python -m
    <package>.train`) whose package has the contract's modules; else None (the launchers
    then run the jobs as Hydra's basic launcher does)."""
    code = getattr(task_function, "__code__", None)
    if code is None or code.co_name != ENTRY[1]:
        return None
    module = getattr(task_function, "__module__", None)
    if module == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        module = spec.name if spec is not None else None
    if not module or not module.endswith(f".{ENTRY[0]}"):
        return None
    package = module.rsplit(".", 1)[0]
    spec = importlib.util.find_spec(module)  # found, not imported
    if spec is None or Path(code.co_filename).resolve() != Path(str(spec.origin)).resolve():
        return None
    return package if offers(package) else None


def offers(package: str) -> bool:
    """Whether `package` is installed with every module of the contract."""
    try:
        return all(importlib.util.find_spec(f"{package}.{name}") for name in CONTRACT)
    except ModuleNotFoundError:  # `package` itself, or a parent of a module, is missing
        return False


def use(package: str) -> None:
    """The app this process stacks from now on (forked workers inherit it; an array task
    of `vectorized_slurm` is told it with its work)."""
    global _package
    _package = package


def name() -> str:
    """The app package's name (`xor_lightning`, or a copy's)."""
    if _package is None:
        raise RuntimeError("no app to stack: xor_vectorized.app.use(<package>) first")
    return _package


def read(module: str) -> ModuleType:
    """The app's module `module` (`"tasks"`, `"sweeps.summary"`: one of `CONTRACT`)."""
    return importlib.import_module(f"{name()}.{module}")


def target(module: str, attr: str) -> str:
    """The `_target_` a config gives for the app's `module.attr` (`model.MLP`, say)."""
    return f"{name()}.{module}.{attr}"


def function(module: str, attr: str) -> Callable[..., Any]:
    """The app's function `module.attr`, looked up when called: what an engine module names
    at its top where it would import it (`read_json = app.function("files", "read_json")`)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(read(module), attr)(*args, **kwargs)

    call.__name__ = call.__qualname__ = attr
    return call
