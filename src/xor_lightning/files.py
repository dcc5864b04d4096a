"""Small records written whole or not at all, and read back without trusting them.

A job's `job.json` and `metrics.json` say whether a sweep's job is finished. Written in
place, a kill in mid-write leaves half a file, and every later rerun of the sweep would
stop on it. Each is written to a temporary file beside it, then renamed over it (a rename
is atomic on POSIX file systems), and a record that cannot be read counts as absent.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    """`write(a temporary file beside path)`, then renamed over `path`: `path` holds all of
    it, or what it held before (a checkpoint, a table), never a part of it. A write or a
    rename that fails leaves nothing behind: the temporary file is removed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """`path` holds `text` whole, or what it held before: never a part of it."""
    write_atomically(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path, content: dict[str, Any]) -> None:
    write_text(path, json.dumps(content, indent=2) + "\n")


def read_json(path: Path) -> dict[str, Any] | None:
    """The record in `path`; None when it is missing or unreadable (cut short, say)."""
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None


def digest(config: Any) -> str:
    """A short fingerprint of a job's composed config (plain containers): two jobs with
    the same one would train the same run."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]
