"""`make bench`: xor-lightning against the chapter's plain PyTorch script, on this machine.

Both sides run alternately, several times; the table shows medians and their ratios:
  1. the default run, whole process (imports, data, 401 steps, validation, checkpoints,
     TensorBoard, test) vs `plain_xor.py` (imports torch, 401 full-batch steps);
  2. fit only: the same 401 steps, in this process, after a warm-up;
  3. steady state on 1M points, batch 1024, for the default loop (Lightning's own, one
     mini-batch a `training_step`) and for `model.steps_per_call=64`: process time with 3
     epochs minus with 1 epoch, for both sides, so start-up cancels out (wall time, with
     the range of the per-repeat ratios, and CPU time, which other load on the machine
     barely moves), then the same in this process, with no start-up at all;
  4. peak memory (max RSS) of the processes in 1 and 3.
The table goes to outputs/bench/<stamp>.md and outputs/bench/latest.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import plain_xor  # noqa: E402

STEADY = ["data.n_samples=1000000", "data.batch_size=1024"]
# The training loop of each steady-state measurement: Lightning's own (the default) and
# chunks of 64 mini-batches a `training_step` (model.steps_per_call, chunked.py).
LOOPS = {"default loop": [], "steps_per_call=64": ["model.steps_per_call=64"]}


class Proc(NamedTuple):
    wall: float  # seconds
    cpu: float  # user + system seconds: barely moved by other load on a shared machine
    rss: float  # peak resident memory, MB


def run(cmd: list[str]) -> Proc:
    """Wall and CPU seconds and peak RSS of one process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr.read().decode()[-2000:]}")
    return Proc(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def train_cmd(tmp: str, accelerator: str, *overrides: str) -> list[str]:
    run_dir = tempfile.mkdtemp(dir=tmp)
    return [sys.executable, "-m", "xor_lightning.train", f"hydra.run.dir={run_dir}",
            f"trainer.accelerator={accelerator}", *overrides]  # fmt: skip


def plain_cmd(device: str, *args: str) -> list[str]:
    return [sys.executable, str(HERE / "plain_xor.py"), f"--device={device}", *args]


def fit_only(
    accelerator: str,
    repeats: int,
    overrides: tuple[str, ...] = (),
    n: int = 400,
    bs: int = 0,
    warmup: bool = True,
) -> tuple[list[float], list[float]]:
    """trainer.fit of the default run (or `overrides`) vs plain_xor.fit, alternately, in
    this process: no start-up on either side. A first round warms up and is dropped."""
    import logging

    from hydra import compose, initialize_config_dir

    from xor_lightning.config import CONF_DIR
    from xor_lightning.train import build

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    device = "cuda" if accelerator == "gpu" else "cpu"
    ours, plain = [], []
    with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(CONF_DIR, version_base="1.3"):
        for i in range(repeats + warmup):
            overrides_i = [f"paths.output_dir={tmp}/{i}", f"trainer.accelerator={accelerator}"]
            cfg = compose("train", [*overrides_i, *overrides])
            trainer, module, datamodule = build(cfg)
            start = time.perf_counter()
            trainer.fit(module, datamodule=datamodule)
            if device == "cuda":
                torch.cuda.synchronize()
            ours.append(time.perf_counter() - start)
            with contextlib.redirect_stdout(io.StringIO()):
                plain.append(plain_xor.fit(n, bs, cfg.trainer.max_epochs, device=device))
    return ours[warmup:], plain[warmup:]


def steady_in_process(
    accelerator: str, repeats: int, loop: tuple[str, ...] = ()
) -> tuple[list[float], list[float]]:
    """Seconds per epoch on 1M points, in this process: (fit of 3 epochs - fit of 1) / 2
    for both sides, so the fixed costs of a fit (sanity check, checkpoints, teardown) cancel."""
    one = (*STEADY, *loop, "trainer.max_epochs=1")
    three = (*STEADY, *loop, "trainer.max_epochs=3")
    fit_only(accelerator, 1, one, 10**6, 1024, warmup=False)  # warm-up
    ours, plain = [], []
    for _ in range(repeats):  # 1 and 3 epochs alternate, so load that drifts hits both
        (o1,), (p1,) = fit_only(accelerator, 1, one, 10**6, 1024, warmup=False)
        (o3,), (p3,) = fit_only(accelerator, 1, three, 10**6, 1024, warmup=False)
        ours.append((o3 - o1) / 2)
        plain.append((p3 - p1) / 2)
    return ours, plain


def steady_rows(
    tmp: str, acc: str, device: str, repeats: int, name: str, loop: list[str],
    mem_o: list[float], mem_p: list[float],
) -> list[tuple[str, str, str, str]]:  # fmt: skip
    """The steady-state rows of one training loop: by process (wall and CPU), in process."""
    med, rows = statistics.median, []
    d_o, d_p, c_o, c_p = [], [], [], []
    for i in range(repeats):
        o1, o3, p1, p3 = [], [], [], []
        jobs = [
            (o1, train_cmd(tmp, acc, *STEADY, *loop, "trainer.max_epochs=1")),
            (p1, plain_cmd(device, "--n=1000000", "--batch-size=1024", "--epochs=1")),
            (o3, train_cmd(tmp, acc, *STEADY, *loop, "trainer.max_epochs=3")),
            (p3, plain_cmd(device, "--n=1000000", "--batch-size=1024", "--epochs=3")),
        ]
        for out, cmd in jobs if i % 2 == 0 else jobs[::-1]:  # alternate the order too
            out.append(run(cmd))
        d_o.append((o3[0].wall - o1[0].wall) / 2)
        d_p.append((p3[0].wall - p1[0].wall) / 2)
        c_o.append((o3[0].cpu - o1[0].cpu) / 2)
        c_p.append((p3[0].cpu - p1[0].cpu) / 2)
        mem_o += [o1[0].rss, o3[0].rss]
        mem_p += [p1[0].rss, p3[0].rss]
    e_o, e_p = med(d_o), med(d_p)
    spread = sorted(o / p for o, p in zip(d_o, d_p, strict=True))
    rows.append((f"steady state ({name}), s per epoch of 1M points", f"{e_o:.2f}", f"{e_p:.2f}",
                 f"{e_o / e_p:.2f}x (runs: {spread[0]:.2f}-{spread[-1]:.2f}x)"))  # fmt: skip
    rows.append((f"steady state ({name}), samples/s", f"{1 / e_o:.2f}M", f"{1 / e_p:.2f}M",
                 f"{e_p / e_o:.2f}x"))  # fmt: skip
    u_o, u_p = med(c_o), med(c_p)
    rows.append((f"steady state ({name}), CPU s per epoch", f"{u_o:.2f}", f"{u_p:.2f}",
                 f"{u_o / u_p:.2f}x"))  # fmt: skip
    print("    ... and in this process (no start-up): 3 epochs minus 1, 1M points")
    i_o, i_p = steady_in_process(acc, repeats, tuple(loop))
    s_o, s_p = med(i_o), med(i_p)
    rows.append((f"steady state ({name}) in-process, s per epoch", f"{s_o:.2f}", f"{s_p:.2f}",
                 f"{s_o / s_p:.2f}x"))  # fmt: skip
    return rows


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, {gpu}; Python {platform.python_version()}, "
        f"torch {torch.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5, help="runs of each side (medians)")
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    args = parser.parse_args()
    acc, device = args.accelerator, "cuda" if args.accelerator == "gpu" else "cpu"
    med = statistics.median

    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        print(f"1/3 default run vs plain script, whole process, {args.repeats}x each ...")
        ours, plain = [], []
        for _ in range(args.repeats):
            ours.append(run(train_cmd(tmp, acc)))
            plain.append(run(plain_cmd(device)))
        t_o, t_p = med(r.wall for r in ours), med(r.wall for r in plain)
        rows.append(
            ("default run, whole process (s)", f"{t_o:.2f}", f"{t_p:.2f}", f"{t_o / t_p:.2f}x")
        )
        m_o, m_p = max(r.rss for r in ours), max(r.rss for r in plain)

        print(f"2/3 fit only, 401 full-batch steps, {args.repeats}x each ...")
        f_o, f_p = fit_only(acc, args.repeats)
        rows.append(
            (
                "fit only, 401 steps (s)",
                f"{med(f_o):.3f}",
                f"{med(f_p):.3f}",
                f"{med(f_o) / med(f_p):.2f}x",
            )
        )

        steady_repeats = args.repeats
        mem_o, mem_p = [], []
        for name, loop in LOOPS.items():
            print(f"3/3 steady state, {name}, 1M points, batch 1024, {steady_repeats}x each ...")
            rows += steady_rows(tmp, acc, device, steady_repeats, name, loop, mem_o, mem_p)
        rows.append(
            ("peak memory, default run (MB)", f"{m_o:.0f}", f"{m_p:.0f}", f"{m_o / m_p:.2f}x")
        )
        rows.append(
            (
                "peak memory, 1M points (MB)",
                f"{max(mem_o):.0f}",
                f"{max(mem_p):.0f}",
                f"{max(mem_o) / max(mem_p):.2f}x",
            )
        )

    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    lines = [
        f"`make bench` ({acc}), {stamp}: medians of {args.repeats} alternated runs",
        "",
        f"Machine: {machine()}",
        "",
        "| measure | xor-lightning | plain PyTorch | ratio |",
        "| --- | ---: | ---: | ---: |",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
    ]
    suffix = "" if acc == "cpu" else f"-{acc}"
    save_table(lines, f"{stamp}{suffix}.md", f"latest{suffix}.md")


def save_table(lines: list[str], *names: str) -> None:
    """A benchmark's table: printed, and written to outputs/bench/<name> for each name."""
    table = "\n".join(lines) + "\n"
    out = REPO / "outputs" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        (out / name).write_text(table)
    print("\n" + table + f"\nwritten to {out / names[-1]}")


if __name__ == "__main__":
    main()
