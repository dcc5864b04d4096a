"""Ctrl-C and SIGTERM outside a vectorised sweep's fits: held until what is being written
is whole, then the summary of what finished, one line on how to go on, exit 128 + n.

During a fit, the fit's own `GracefulStop` takes the signal (every model stops at the same
epoch's end, its last.ckpt saved); a job run alone stops as a run stops. Outside them
(composing the jobs, writing their dirs, between fits) `HELD` keeps the signal until the
launcher reaches a point where nothing is half-written (`stop_if_held`). A second Ctrl-C
leaves at once: a rerun of the same command repairs what it cut short.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Held:
    """The signal received while the sweep's work outside a fit could not stop (or None)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._pid = os.getpid()

    @contextmanager
    def holding(self) -> Iterator[Held]:
        """Hold SIGINT and SIGTERM while the block runs (from the main thread only)."""
        self.signal, self._pid = None, os.getpid()
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.signal(sig, self._hold) for sig in SIGNALS}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _hold(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._pid:
            return  # a forked writer (`forks.py`): it finishes its share, the parent stops
        if self.signal is not None and signum == signal.SIGINT:
            print("error: stopped at once by a second Ctrl-C: the job dirs being written may "
                  "be incomplete (rerun the same command to repair them)",
                  file=sys.stderr)  # fmt: skip
            os._exit(128 + signum)
        self.signal = signum
        log.warning("%s received: stopping once what is being written is whole (Ctrl-C again "
                    "stops at once)", signal.Signals(signum).name)  # fmt: skip

    def take(self, code: Any) -> bool:
        """A job run alone left with `SystemExit(code)`: whether a signal stopped it (held)."""
        signum = code - 128 if isinstance(code, int) else None
        if signum in SIGNALS:
            self.signal = signum
            return True
        return False


HELD = Held()
