"""Work shared out to forked worker processes, when there is enough of it to pay for them.

A forked child sees the parent's memory as it was (the jobs, a fit's results) without
pickling any of it; only what `fn` returns travels back. Starting a process costs about
0.3 s here, so callers pass as many workers as their work is worth (often none).
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable, Sequence
from typing import Any

_WORK: tuple[Callable[[Any], Any], Sequence[Any]] | None = None  # what forked workers run


def fork_map(
    fn: Callable[[Any], Any], items: Sequence[Any], workers: int, chunk: int = 64
) -> list[Any]:
    """`[fn(x) for x in items]`, computed by `workers` forked processes when more than one,
    in slices of `chunk` items."""
    global _WORK
    if workers <= 1:
        return [fn(x) for x in items]
    _WORK = (fn, items)
    bounds = [(i, min(i + chunk, len(items))) for i in range(0, len(items), chunk)]
    try:
        with multiprocessing.get_context("fork").Pool(workers, _worker_signals) as pool:
            parts = pool.map(_run_slice, bounds, chunksize=1)
    finally:
        _WORK = None
    return [r for part in parts for r in part]


def _worker_signals() -> None:
    """A worker leaves Ctrl-C to the parent (which holds it until its work is whole) and
    ends on SIGTERM, as `Pool.terminate` needs: the parent's handlers are not the child's."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run_slice(bounds: tuple[int, int]) -> list[Any]:
    import torch

    torch.set_num_threads(1)  # the parent's thread pool is not the child's
    assert _WORK is not None
    fn, items = _WORK
    return [fn(items[i]) for i in range(*bounds)]
