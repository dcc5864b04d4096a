"""Points from CSV files: your own data (`data=csv`) and xor-predict's input.

Your data's file: every column but the last holds a feature, the last the target (a label
0 or 1, a class 0..K-1, or a value, as the task says). A header line is optional; its names
are kept (xor-predict reads and writes them), else the columns are `x1`, ..., `xk` and
`label`. Predict's input has the training file's feature columns. Every row is checked,
and a bad one is refused in one line that names the file and the line:
`points.csv line 7: 'abc' is not a number`. `data=csv` reads the whole file before
anything is built, so a broken file stops a run before it starts.
"""

from __future__ import annotations

import csv
import functools
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch

from xor_lightning.errors import UserError


class Points(NamedTuple):
    """A labelled file's points: X (n, k) and y (n, 1), float32, and its column names."""

    X: torch.Tensor
    y: torch.Tensor
    names: tuple[str, ...]  # the k features', then the target's


def feature_names(n: int) -> tuple[str, ...]:
    """`x1`, ..., `xn`: the columns of `n` features."""
    return tuple(f"x{i + 1}" for i in range(n))


def number(text: str, where: str, columns: Sequence[str] = ("x1", "x2")) -> float:
    """A finite float, or a `UserError` that says where and why not."""
    text = text.strip()
    if not text:
        raise UserError(f"{where}: missing value (expected {','.join(columns)})")
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise UserError(f"{where}: {text!r} is not a finite number")
    return value


def _is_header(row: Sequence[str]) -> bool:
    """A first row with a cell that is not a number names the columns."""
    try:
        [float(c) for c in row]
    except ValueError:
        return True
    return False


def header(path: Path) -> tuple[str, ...] | None:
    """The names in a labelled file's header line, or None when it has none."""
    with path.open(newline="") as f:
        for row in csv.reader(f):
            if row and any(c.strip() for c in row):
                return tuple(c.strip() for c in row) if _is_header(row) else None
    return None


def csv_rows(
    path: Path, columns: Sequence[str] | None = ("x1", "x2")
) -> Iterator[tuple[float, ...]]:
    """The rows of a CSV file with these columns (a header line naming them is optional),
    validated. `columns=None`: labelled points with any number of features, the header
    line (any names) or the first row sets how many."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    with path.open(newline="") as f:
        reader = csv.reader(f)
        try:
            for lineno, row in enumerate(reader, start=1):
                where = f"{path} line {lineno}"
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                first = columns is None
                if columns is None:  # the first row decides: names, or x1..xk and label
                    named = _is_header(row) and len(row) >= 2
                    columns = tuple(c.strip() for c in row) if named else (
                        *feature_names(max(1, len(row) - 1)), "label")  # fmt: skip
                    if named:
                        continue
                elif lineno == 1 and [c.strip().lower() for c in row] == [
                    c.lower() for c in columns
                ]:
                    continue
                elif lineno == 1 and _is_header(row) and len(row) == len(columns):
                    raise UserError(
                        f"{where}: the header {','.join(c.strip() for c in row)} is not the "
                        f"model's input columns {','.join(columns)}"
                    )
                if first and len(row) < 2:
                    raise UserError(f"{where}: expected the features, then the target")
                if len(row) != len(columns):
                    raise UserError(
                        f"{where}: expected {len(columns)} columns ({','.join(columns)}), "
                        f"got {len(row)}"
                    )
                yield tuple(number(c, where, columns) for c in row)
        except (UnicodeDecodeError, csv.Error) as e:  # binary, or a NUL byte
            line = reader.line_num + isinstance(e, UnicodeDecodeError)  # the line being read
            raise UserError(f"{path} line {line}: not CSV text ({e})") from None


def read_points(path: str | Path) -> Points:
    """Every point of a labelled CSV file (features, then the target): X (n, k), y (n, 1),
    float32, and the column names.

    Cached by path, size and modification time: the jobs of a sweep, or of a launcher
    that builds many jobs' data, read the file once per process. Do not modify the tensors.
    """
    if not Path(path).is_file():
        what = "a directory, not a file" if Path(path).is_dir() else "no such file"
        raise UserError(f"{path}: {what} (data.path)")
    stat = Path(path).stat()
    return _read(str(path), str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _read(path: str, resolved: str, size: int, mtime_ns: int) -> Points:
    rows = list(csv_rows(Path(path), None))
    if not rows:
        lines = len(Path(path).read_text().splitlines())
        raise UserError(f"{path} line {lines + 1}: no points (expected rows x1,x2,label)")
    points = torch.tensor(rows, dtype=torch.float32)
    names = header(Path(path)) or (*feature_names(points.shape[1] - 1), "label")
    return Points(points[:, :-1].contiguous(), points[:, -1:].contiguous(), names)


def line_of(path: str | Path, row: int) -> int:
    """The line number of data row `row` (from 0) of a labelled file: for messages."""
    with Path(path).open(newline="") as f:
        seen = -1 if header(Path(path)) else 0
        for lineno, cells in enumerate(csv.reader(f), start=1):
            if cells and any(c.strip() for c in cells):
                if seen == row:
                    return lineno
                seen += 1
    return 0


def split_index(
    n: int, seed: int, val_fraction: float, test_fraction: float, path: str = "the data"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row numbers of train, validation and test: a permutation drawn from `seed`; the
    validation and test sets get round(fraction · n) points each (at least 1), training
    the rest."""
    n_val, n_test = max(1, round(val_fraction * n)), max(1, round(test_fraction * n))
    if n - n_val - n_test < 1:
        raise UserError(
            f"{path}: {n} points are too few to split into train, validation and test "
            f"with data.val_fraction={val_fraction:g} and data.test_fraction={test_fraction:g}"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    train, val, test = order.split([n - n_val - n_test, n_val, n_test])
    return train, val, test


def csv_split(
    data: Any, split: str, points: tuple[torch.Tensor, torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One split of the file at `data.path` (or of `points`, X and y of the whole file, as
    a checkpoint keeps them), drawn at random by `data.seed`: `val_fraction` and
    `test_fraction` of the points to validation and test, the rest to training; `noise`
    then jitters the split's points."""
    k = ("train", "val", "test").index(split)
    seed, noise = data.get("seed", 0), data.get("noise", 0.0)
    X, y = points if points is not None else read_points(data["path"])[:2]
    fractions = data.get("val_fraction", 0.2), data.get("test_fraction", 0.2)
    rows = split_index(len(X), seed, *fractions, path=str(data.get("path")))[k]
    X, y = X[rows], y[rows]
    if noise > 0:
        X = X + noise * torch.randn(X.shape, generator=torch.Generator().manual_seed(3 * seed + k))
    return X, y
