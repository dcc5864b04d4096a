"""`NoProfiler`: Lightning's default of not profiling, without its cost on every hook call.

Lightning wraps every hook call, for the module and for each callback, in
`trainer.profiler.profile(name)`; its default `PassThroughProfiler` records nothing, but
each call still makes a new generator-based context manager. A step of the chapter's
network has about a hundred such calls (a dozen hooks, each for every callback), which
costs a measurable share of a step that takes half a millisecond (docs/performance.md).
This one hands back one shared do-nothing context instead. `train.build` gives it to the
Trainer unless the config names a profiler (`debug=profiler`: Lightning's simple one).
"""

from __future__ import annotations

import contextlib
from typing import Any

from lightning.pytorch.profilers import PassThroughProfiler


class NoProfiler(PassThroughProfiler):
    """Profiles nothing, and makes nothing per call."""

    _nothing = contextlib.nullcontext()

    def profile(self, action_name: str) -> Any:
        return self._nothing
