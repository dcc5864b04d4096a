"""`UserError`: what the user asked for cannot be done; said in one line, without a traceback.

Every entry point turns it into `error: <message>` and exit status 2 (`config.run_app`).
It lives on its own so that any module can raise it without importing the rest of
`config.py` (which reads data files for its resolvers and knows the run-dir lock).
"""

from __future__ import annotations

import sys
from typing import NoReturn


class UserError(Exception):
    """A problem with what the user asked for: reported in one line, without a traceback."""


def refuse(message: object) -> NoReturn:
    """`error: <message>` on stderr and exit status 2: how every entry point refuses."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)
