"""`xor-unpack <sweep dir> <job>...`: write a job's dir from a fit that wrote none.

A vectorised fit of more than `hydra.launcher.job_dirs_up_to` models keeps its jobs in
`<sweep dir>/fits/` (`stacked/compact.py`). This writes the dirs of the jobs asked for
(numbers, or ranges such as `10-20`) where the sweep would have put them, with the same
writer a sweep with job dirs uses: `.hydra/`, `checkpoints/` (best and last, key for key
the sweep's), `metrics.json`, `job.json` (the fit's record), `hparams.yaml`, `train.log`
and the TensorBoard curves. `xor-eval`, `xor-predict`, `xor-export` and `resume=<job dir>`
then work on them as on any run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from xor_lightning.errors import UserError

log = logging.getLogger(__name__)


def jobs_wanted(words: list[str]) -> list[int]:
    """`["3", "10-12"]` -> [3, 10, 11, 12]; anything else is a `UserError`."""
    nums: list[int] = []
    for word in words:
        low, dash, high = word.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise UserError(f"{word!r} is not a job number or a range of them (such as 10-20)")
        nums += range(int(low), int(high or low) + 1)
    return sorted(set(nums))


def unpack(sweep_dir: Path, nums: list[int]) -> list[Path]:
    """Write the jobs' dirs; the dirs written."""
    from xor_lightning.files import write_json
    from xor_lightning.lock import hold, in_use, let_go
    from xor_lightning.stacked import compact
    from xor_lightning.stacked.checkpoints import CheckpointWriter
    from xor_lightning.stacked.outputs import write_job
    from xor_lightning.stacked.run import Job, write_hydra_files
    from xor_lightning.sweeps.summary import packed_records

    if not sweep_dir.is_dir():
        raise UserError(f"{sweep_dir} is not a directory (give a sweep's dir)")
    packed = packed_records(sweep_dir)
    if not packed:
        raise UserError(f"{sweep_dir} holds no fit without job dirs (fits/*/jobs.json)")
    missing = [n for n in nums if n not in packed]
    if missing:
        raise UserError(f"job {missing[0]} is not in a fit without job dirs under {sweep_dir} "
                        f"(its jobs: {_ranges(sorted(packed))})")  # fmt: skip
    by_fit: dict[Path, list[int]] = {}
    for n in nums:
        by_fit.setdefault(packed[n][1], []).append(n)
    written = []
    for fit_dir, wanted in by_fit.items():
        if not (fit_dir / "fit.pt").is_file():
            raise UserError(f"{fit_dir} has no fit.pt: its fit has not ended (still running?)")
        saved = compact.load(fit_dir)
        result, info = saved["result"], saved["info"]
        index = {job["num"]: k for k, job in enumerate(saved["jobs"])}
        writer = CheckpointWriter(saved["jobs"][0]["resolved"])
        for n in wanted:
            k = index[n]
            entry = saved["jobs"][k]
            job = Job(n, entry["overrides"], Path(entry["dir"]), entry["resolved"],
                      entry["unresolved"], entry["digest"])  # fmt: skip
            if not job.dir.resolve().is_relative_to(sweep_dir.resolve()):
                raise UserError(f"job {n}'s dir is {job.dir}, outside {sweep_dir}: was the "
                                "sweep moved? Unpack it where it ran")  # fmt: skip
            if saved["hydra_dir"] is not None:
                job.hydra_files = (job.dir / saved["hydra_dir"], {
                    "config.yaml": entry["unresolved"], "hydra.yaml": entry["hydra"],
                    "overrides.yaml": entry["overrides_yaml"]})  # fmt: skip
            busy = hold(job.dir)
            if busy is not None:
                raise UserError(in_use(job.dir, busy))
            try:
                if job.hydra_files:
                    write_hydra_files(job)
                write_job(job, k, result, writer, info)
                # the fit's own record, without the metrics (those are metrics.json's)
                row = packed[n][0]
                write_json(job.dir / "job.json", {k: v for k, v in row.items() if "/" not in k})
            finally:
                let_go(job.dir)
            written.append(job.dir)
    return written


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
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
