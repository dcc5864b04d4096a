"""Points from CSV files: predict's input (`x1,x2`) and your own data (`x1,x2,label`).

Any number of feature columns works: your data's file fixes it (its header line, else its
first row: every column but the last, which is the label), and predict's input has as many
as the network has inputs. Every row is checked, and a bad one is refused in one line that
names the file and the line: `points.csv line 7: 'abc' is not a number`. `data=csv` reads
the whole file before anything is built, so a broken file stops a run before it starts.
"""

from __future__ import annotations

import csv
import functools
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from xor_lightning.errors import UserError

LABELLED = ("x1", "x2", "label")


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


def csv_rows(
    path: Path, columns: Sequence[str] | None = ("x1", "x2")
) -> Iterator[tuple[float, ...]]:
    """The rows of a CSV file with these columns (header line optional), validated; a
    `label` column must hold 0 or 1. `columns=None`: labelled points with any number of
    features, the header line (any names, `label` last) or the first row sets how many."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    with path.open(newline="") as f:
        reader = csv.reader(f)
        try:
            for lineno, row in enumerate(reader, start=1):
                where = f"{path} line {lineno}"
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                names = [c.strip().lower() for c in row]
                if columns is None:
                    labelled = names[-1] == "label" and len(row) >= 2
                    columns = (*names[:-1], "label") if labelled else LABELLED
                    if not labelled and len(row) >= 2:  # no header: the first row decides
                        columns = (*feature_names(len(row) - 1), "label")
                    if labelled:
                        continue
                elif lineno == 1 and names == list(columns):
                    continue
                if len(row) != len(columns):
                    raise UserError(
                        f"{where}: expected {len(columns)} columns ({','.join(columns)}), "
                        f"got {len(row)}"
                    )
                values = tuple(number(c, where, columns) for c in row)
                if columns[-1] == "label" and values[-1] not in (0, 1):
                    raise UserError(f"{where}: label {row[-1].strip()!r} is not 0 or 1")
                yield values
        except (UnicodeDecodeError, csv.Error) as e:  # binary, or a NUL byte
            line = reader.line_num + isinstance(e, UnicodeDecodeError)  # the line being read
            raise UserError(f"{path} line {line}: not CSV text ({e})") from None


def read_points(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Every point of a labelled CSV file (x1,...,xk,label): X (n, k), y (n, 1), float32.

    Cached by path, size and modification time: the jobs of a sweep, or of a launcher
    that builds many jobs' data, read the file once per process. Do not modify the tensors.
    """
    if not Path(path).is_file():
        what = "a directory, not a file" if Path(path).is_dir() else "no such file"
        raise UserError(f"{path}: {what} (data.path)")
    stat = Path(path).stat()
    return _read(str(path), str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _read(path: str, resolved: str, size: int, mtime_ns: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows = list(csv_rows(Path(path), None))
    if not rows:
        lines = len(Path(path).read_text().splitlines())
        raise UserError(f"{path} line {lines + 1}: no points (expected rows x1,x2,label)")
    points = torch.tensor(rows, dtype=torch.float32)
    return points[:, :-1].contiguous(), points[:, -1:].contiguous()


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
