"""`xor-unpack <sweep dir> <job>...`: write a job's dir from a fit that wrote none.

A vectorised fit of more than `hydra.launcher.job_dirs_up_to` models keeps its jobs in
`<sweep dir>/fits/` (`xor_vectorized/compact.py`). This writes the dirs of the jobs asked for
(numbers, or ranges such as `10-20`) where the sweep would have put them, with the same
writer a sweep with job dirs uses: `.hydra/`, `checkpoints/` (best and last, key for key
the sweep's), `metrics.json`, `job.json` (the fit's record), `hparams.yaml`, `train.log`
and the TensorBoard curves. `xor-eval`, `xor-predict`, `xor-export` and `resume=<job dir>`
then work on them as on any run.

Everything it reads from the sweep dir is data (`xor_vectorized/fitfile.py`), checked before
any job's dir is written: what cannot be read so is refused in one line, and nothing is
written. A job's dir that holds another job's outputs is emptied first (under its lock).
"""

from __future__ import annotations

import argparse
import bisect
import json
import logging
import os
import re
import sys
from itertools import count
from pathlib import Path
from typing import Any

from xor_vectorized import app

log = logging.getLogger(__name__)
RERUN = "rerun the sweep (its command, the same hydra.sweep.dir) to train them again"
# The app of a fit recorded before fits said theirs: the one app the engine served then.
FIRST_APP = "xor_lightning"


class Refused(Exception):
    """What cannot be unpacked, said in one line (`error: ...`, exit status 2)."""


def use_app_of(sweep_dir: Path) -> None:
    """Read the sweep's fits with the code of the app that trained them (each fit's
    `jobs.json` names it: `compact.py`), which must be installed here."""
    names = set()
    for record in sorted(sweep_dir.glob("fits/*/jobs.json")):
        try:
            names.add(json.loads(record.read_text()).get("app") or FIRST_APP)
        except (OSError, ValueError, AttributeError):
            continue  # a record cut short: `packed_records` says what it makes of it
    name = min(names) if names else FIRST_APP
    if len(names) > 1:
        raise Refused(f"{sweep_dir} holds fits of several apps ({', '.join(sorted(names))})")
    if not app.offers(name):
        raise Refused(f"{sweep_dir} was trained by {name}, which is not installed here")
    app.use(name)


def jobs_wanted(words: list[str]) -> list[tuple[int, int]]:
    """`["3", "10-12"]` -> [(3, 3), (10, 12)]: each word's first and last job; anything
    else is a `Refused`."""
    spans = []
    for word in words:
        found = re.fullmatch(r"(\d+)(?:-(\d+))?", word, re.ASCII)
        if not found:
            raise Refused(f"{word!r} is not a job number or a range of them (such as 10-20)")
        low, high = int(found[1]), int(found[2] or found[1])
        if low > high:
            raise Refused(f"{word!r} is not a range of jobs: {low} comes after {high} "
                          "(use FIRST-LAST, the first the lower, such as 10-20)")  # fmt: skip
        spans.append((low, high))
    return spans


def select(spans: list[tuple[int, int]], held: list[int], where: Path) -> list[int]:
    """The jobs of `spans`, each once, in order: every one of them must be in `held` (the
    sorted jobs of the sweep's fits), else a `Refused` names the first that is not. A
    range is never spelled out, so its size costs nothing."""
    chosen: set[int] = set()
    for low, high in spans:
        inside = held[bisect.bisect_left(held, low) : bisect.bisect_right(held, high)]
        if len(inside) != high - low + 1:
            missing = next(n for n, h in zip(count(low), [*inside, None]) if n != h)
            raise Refused(f"job {missing} is not in a fit without job dirs under {where} "
                          f"(its jobs: {_ranges(held)})")  # fmt: skip
        chosen.update(inside)
    return sorted(chosen)


def unpack(sweep_dir: Path, wanted: list[tuple[int, int]]) -> list[Path]:
    """Write the dirs of the jobs in `wanted` (`jobs_wanted`'s spans); the dirs written."""
    from xor_vectorized import fitfile
    from xor_vectorized.run import Job

    if not sweep_dir.is_dir():
        raise Refused(f"{sweep_dir} is not a directory (give a sweep's dir)")
    use_app_of(sweep_dir)
    packed = app.read("sweeps.summary").packed_records(sweep_dir)
    if not packed:
        raise Refused(f"{sweep_dir} holds no fit without job dirs (fits/*/jobs.json)")
    by_fit: dict[Path, list[int]] = {}
    for n in select(wanted, sorted(packed), sweep_dir):
        by_fit.setdefault(packed[n][1], []).append(n)
    todo: list[tuple[Any, int, dict[str, Any]]] = []  # (job, its model, its fit's data)
    for fit_dir, nums in by_fit.items():  # every fit read and checked before any writing
        if not (fit_dir / "fit.pt").is_file():
            raise Refused(f"{fit_dir} has no fit.pt: its fit has not ended (still running?)")
        try:
            saved = fitfile.load(fit_dir)
            fitfile.check_targets(saved["base"]["resolved"], str(fit_dir / "fit.pt"))
            index = {job["num"]: k for k, job in enumerate(saved["jobs"])}
            for n in nums:
                if n not in index:
                    raise fitfile.Unreadable(f"{fit_dir / 'fit.pt'} does not hold job {n}, "
                                             "which its jobs.json lists")  # fmt: skip
                k, entry = index[n], saved["jobs"][index[n]]
                cfg = fitfile.configs(saved, k)
                fitfile.check_targets(cfg["resolved"], str(fit_dir / "fit.pt"))
                job = Job(n, entry["overrides"], Path(entry["dir"]), cfg["resolved"],
                          cfg["unresolved"], entry["digest"])  # fmt: skip
                if saved["hydra_dir"] is not None:
                    job.hydra_files = (job.dir / saved["hydra_dir"], {
                        "config.yaml": cfg["unresolved"], "hydra.yaml": cfg["hydra"],
                        "overrides.yaml": cfg["overrides_yaml"]})  # fmt: skip
                todo.append((job, k, saved))
        except fitfile.Unreadable as e:
            raise Refused(f"{e}; its jobs' dirs cannot be unpacked: {RERUN}") from None
    for job, _, _ in todo:
        if not job.dir.resolve().is_relative_to(sweep_dir.resolve()):
            raise Refused(f"job {job.num}'s dir is {job.dir}, outside {sweep_dir}: was the "
                          "sweep moved? Unpack it where it ran")  # fmt: skip
    return _write_all(todo, packed)


def _write_all(todo: list[tuple[Any, int, dict[str, Any]]], packed: dict[int, Any]) -> list[Path]:
    """Hold every job's dir (refusing, before anything is written, one in use or that
    cannot be written), then write each."""
    from xor_vectorized.checkpoints import CheckpointWriter
    from xor_vectorized.outputs import write_job
    from xor_vectorized.run import write_hydra_files

    lock, write_json = app.read("lock"), app.read("files").write_json
    held: list[tuple[Path, bool]] = []  # (dir, made here)
    try:
        for job, _, _ in todo:
            made = not job.dir.exists()
            try:
                busy = lock.hold(job.dir)
            except OSError as e:
                why = lock.unwritable(job.dir, e)
                raise Refused(f"{job.dir} cannot be written: {why}") from None
            if busy is not None:
                raise Refused(lock.in_use(job.dir, busy))
            held.append((job.dir, made))
        writers: dict[int, Any] = {}
        for job, k, saved in todo:
            if id(saved) not in writers:  # one per fit, from its first job's config
                writers = {id(saved): CheckpointWriter(saved["base"]["resolved"])}
            _clear_another(job)
            if job.hydra_files:
                write_hydra_files(job)
            write_job(job, k, saved["result"], writers[id(saved)], saved["info"])
            # the fit's own record, without the metrics (those are metrics.json's)
            row = packed[job.num][0]
            write_json(job.dir / "job.json", {key: v for key, v in row.items() if "/" not in key})
    except BaseException:
        for path, made in held:  # a dir made here for nothing: gone again
            lock.let_go(path)
            if made and [p.name for p in path.iterdir()] == [".lock"]:
                (path / ".lock").unlink()
                path.rmdir()
        held.clear()
        raise
    finally:
        for path, _ in held:
            lock.let_go(path)
    return [job.dir for job, _, _ in todo]


def _clear_another(job: Any) -> None:
    """Empty the job's dir (held) when what it holds is not this job's: another job's
    outputs, as its `job.json` says (or a dir without one), would stay beside this job's
    otherwise, and a failed job would show another's `metrics.json`."""
    from xor_vectorized.reruns import empty, same_job

    LOCK_FILE = app.read("lock").LOCK_FILE
    record = app.read("files").read_json(job.dir / "job.json")
    if record is not None and same_job(record, job):
        return
    if any(entry.name != LOCK_FILE for entry in os.scandir(job.dir)):
        whose = " ".join(record.get("overrides") or []) if record else "no job.json"
        log.warning("job %d: %s held another job's outputs (%s): removed", job.num, job.dir,
                    whose)  # fmt: skip
        empty(job.dir)


def _ranges(nums: list[int]) -> str:
    spans, start = [], nums[0]
    for a, b in zip(nums, [*nums[1:], None], strict=True):
        if b != a + 1:
            spans.append(str(start) if start == a else f"{start}-{a}")
            start = b
    return ", ".join(spans)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="xor-unpack", description="Write jobs' dirs from a vectorised fit that wrote none."
    )
    parser.add_argument("sweep_dir", type=Path, help="the sweep's dir (hydra.sweep.dir)")
    parser.add_argument("jobs", nargs="+", help="job numbers or ranges, such as 3 10-20")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        for path in unpack(args.sweep_dir, jobs_wanted(args.jobs)):
            print(path)
    except Refused as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
