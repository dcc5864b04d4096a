"""The Hydra plugins the template can use but does not need, and the one line a command
gets when it names one that is not installed.

Each plugin is a package of its own under `plugins/` (`make install` installs them all).
Without one, Hydra would say only that it cannot find the config `hydra/launcher/vectorized`
and list the options it has; this says which package to install. Checked on the command
line before Hydra starts, so nothing is made.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from importlib.util import find_spec
from typing import Any

# A command-line choice -> (the module that provides it, what it is, the package's dir).
VECTORIZED = ("hydra_plugins.xor_vectorized_launcher", "the vectorised launcher")
OPTUNA = ("hydra_plugins.xor_optuna_sweeper", "the Optuna sweeper")
PROVIDERS: dict[str, tuple[str, str, str]] = {
    "hydra/launcher=vectorized": (*VECTORIZED, "plugins/xor_vectorized"),
    "hydra/launcher=vectorized_slurm": (
        "hydra_plugins.xor_vectorized_slurm_launcher",
        "the vectorised SLURM launcher",
        "plugins/xor_vectorized",
    ),
    "hydra/sweeper=xor_basic": (
        "hydra_plugins.xor_sweeper",
        "the fast sweep check",
        "plugins/xor_vectorized",
    ),
    "hparams_search=xor_optuna": (*OPTUNA, "plugins/xor_optuna_sweeper"),
    "hydra/sweeper=xor_optuna": (*OPTUNA, "plugins/xor_optuna_sweeper"),
    "hydra/sweeper=optuna": (*OPTUNA, "plugins/xor_optuna_sweeper"),
}


def installed(module: str) -> bool:
    """Whether a plugin's module can be imported (without importing it)."""
    try:
        return find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing too
        return False


def missing(args: Sequence[str]) -> str | None:
    """Why these command-line arguments cannot run here: the first that names a plugin that is
    not installed, in one line naming its package; None when every one they name is."""
    for arg in args:
        choice = arg.lstrip("+~").replace(" ", "")
        if choice in PROVIDERS and not installed(PROVIDERS[choice][0]):
            _, what, where = PROVIDERS[choice]
            return f"{arg} needs {what}, a plugin not installed here: pip install -e {where}"
    return None


def checked(main: Callable[..., Any]) -> Callable[..., Any]:
    """A Hydra entry point that first refuses, in one line, a plugin its command line names
    but that is not installed (called with a config, as tests do, it only runs)."""

    @functools.wraps(main)
    def run(*args: Any, **kwargs: Any) -> Any:
        if not args and not kwargs and (why := missing(sys.argv[1:])):
            from xor_lightning.errors import refuse

            refuse(why)
        return main(*args, **kwargs)

    # The task function itself, as Hydra's decorator exposes it (the launchers look for it).
    run.__wrapped__ = getattr(main, "__wrapped__", main)  # type: ignore[attr-defined]
    return run
