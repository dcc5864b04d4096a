"""`make bench`: xor-lightning against the chapter's plain PyTorch script, on this machine.

Both sides run alternately, several times; the table shows medians and their ratios:
  1. the default run, whole process (imports, data, 401 steps, validation, checkpoints,
     TensorBoard, test) vs `plain_xor.py` (imports torch, 401 full-batch steps);
  2. fit only: the same 401 steps, in this process, after a warm-up;
  3. steady state on 1M points, batch 1024: process time with 3 epochs minus with 1
     epoch, for both sides, so start-up cancels out;
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

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import plain_xor  # noqa: E402

STEADY = ["data.n_samples=1000000", "data.batch_size=1024"]


def run(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def train_cmd(tmp: str, accelerator: str, *overrides: str) -> list[str]:
    run_dir = tempfile.mkdtemp(dir=tmp)
    return [sys.executable, "-m", "xor_lightning.train", f"hydra.run.dir={run_dir}",
            f"trainer.accelerator={accelerator}", *overrides]  # fmt: skip


def plain_cmd(device: str, *args: str) -> list[str]:
    return [sys.executable, str(HERE / "plain_xor.py"), f"--device={device}", *args]


def fit_only(
    accelerator: str, repeats: int, overrides: tuple[str, ...] = (), n: int = 400, bs: int = 0
) -> tuple[list[float], list[float]]:
    """trainer.fit of the default run (or `overrides`) vs plain_xor.fit, alternately, in
    this process: no start-up on either side."""
    import logging

    from hydra import compose, initialize_config_dir

    from xor_lightning.config import CONF_DIR
    from xor_lightning.train import build

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    device = "cuda" if accelerator == "gpu" else "cpu"
    ours, plain = [], []
    with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(CONF_DIR, version_base="1.3"):
        for i in range(repeats + 1):  # the first round warms up
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
    return ours[1:], plain[1:]


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
        t_o, t_p = med(w for w, _ in ours), med(w for w, _ in plain)
        rows.append(
            ("default run, whole process (s)", f"{t_o:.2f}", f"{t_p:.2f}", f"{t_o / t_p:.2f}x")
        )
        m_o, m_p = max(m for _, m in ours), max(m for _, m in plain)

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
        print(f"3/3 steady state, 1M points, batch 1024, {steady_repeats}x each ...")
        d_o, d_p, mem_o, mem_p = [], [], [], []
        for _ in range(steady_repeats):
            o1, o1m = run(train_cmd(tmp, acc, *STEADY, "trainer.max_epochs=1"))
            p1, p1m = run(plain_cmd(device, "--n=1000000", "--batch-size=1024", "--epochs=1"))
            o3, o3m = run(train_cmd(tmp, acc, *STEADY, "trainer.max_epochs=3"))
            p3, p3m = run(plain_cmd(device, "--n=1000000", "--batch-size=1024", "--epochs=3"))
            d_o.append((o3 - o1) / 2)
            d_p.append((p3 - p1) / 2)
            mem_o += [o1m, o3m]
            mem_p += [p1m, p3m]
        e_o, e_p = med(d_o), med(d_p)
        rows.append(
            (
                "steady state, s per epoch of 1M points",
                f"{e_o:.2f}",
                f"{e_p:.2f}",
                f"{e_o / e_p:.2f}x",
            )
        )
        rows.append(
            (
                "steady state, samples/s",
                f"{1e6 / e_o / 1e6:.2f}M",
                f"{1e6 / e_p / 1e6:.2f}M",
                f"{e_p / e_o:.2f}x",
            )
        )
        print("    ... and in this process (no start-up): fit of 2 epochs, 1M points, batch 1024")
        i_o, i_p = fit_only(acc, steady_repeats, (*STEADY, "trainer.max_epochs=2"), 10**6, 1024)
        s_o, s_p = med(i_o) / 2, med(i_p) / 2
        rows.append(
            (
                "steady state in-process, s per epoch",
                f"{s_o:.2f}",
                f"{s_p:.2f}",
                f"{s_o / s_p:.2f}x",
            )
        )
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
    table = "\n".join(lines) + "\n"
    out = REPO / "outputs" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    suffix = "" if acc == "cpu" else f"-{acc}"
    (out / f"{stamp}{suffix}.md").write_text(table)
    (out / f"latest{suffix}.md").write_text(table)
    print("\n" + table + f"\nwritten to {out / f'latest{suffix}.md'}")


if __name__ == "__main__":
    main()
