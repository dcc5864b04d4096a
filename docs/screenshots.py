"""What a learner sees in TensorBoard, as PNGs: `make screenshots`.

Trains the default run, a 4-job sweep (model.hidden 2, 8 x lr 0.05, 0.1) and a 256-seed
vectorised sweep of 100 epochs into outputs/screenshots/, serves each with TensorBoard on
127.0.0.1 and takes headless Chromium screenshots of what the browser shows: the landing
page (Time Series) of the run, the landing page and the HPARAMS tab of the sweep, and the
landing page of the seed sweep's summary runs (`<sweep dir>/tb`). The PNGs go to
outputs/screenshots/; `--docs` also copies the docs' pictures into docs/ (with the run's
hidden_units.png). Look at them: that is the check.
Needs `chromium` (Debian: apt-get install chromium). Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "outputs" / "screenshots"
SWEEP = ["-m", "model.hidden=2,8", "model.optimizer.lr=0.05,0.1"]
SEEDS = ["-m", "seed=range(256)", "hydra/launcher=vectorized", "trainer.max_epochs=100"]
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--enable-unsafe-swiftshader",  # software WebGL, which TensorBoard's charts draw with
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
]


def train(*args: str) -> None:
    cmd = [sys.executable, "-m", "xor_lightning.train", *args]
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(logdir: Path) -> tuple[subprocess.Popen, str]:
    """TensorBoard over `logdir` on a free loopback port, once it answers."""
    port = free_port()
    tensorboard = Path(sys.executable).with_name("tensorboard")
    cmd = [str(tensorboard), "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "data/runs", timeout=2).read()
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(f"TensorBoard did not start on {url}") from None
            time.sleep(0.5)


def screenshot(url: str, png: Path, size: str = "1600,1100") -> None:
    """What headless Chromium shows at `url` after 15 s of (virtual) loading time."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium not found: apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}",
               f"--window-size={size}", "--virtual-time-budget=15000", url]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    print(f"wrote {png}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", action="store_true", help="also update docs/*.png")
    parser.add_argument("--reuse", action="store_true", help="keep the trained run and sweep")
    args = parser.parse_args()
    run, sweep, seeds = OUT / "run", OUT / "sweep", OUT / "seeds"
    if not (args.reuse and run.is_dir() and sweep.is_dir() and seeds.is_dir()):
        shutil.rmtree(OUT, ignore_errors=True)
        train(f"hydra.run.dir={run}")
        train(*SWEEP, f"hydra.sweep.dir={sweep}")
        train(*SEEDS, f"hydra.sweep.dir={seeds}")
    # SVG charts: headless Chromium takes its picture before the WebGL ones are drawn.
    page, hparams = "?forceSVG=true", "?forceSVG=true#hparams"
    story = "?forceSVG=true&smoothing=0"  # the summary's statistics as they are
    shots = [(run, page, "run.png", "1600,1100"), (sweep, page, "sweep.png", "1600,1100"),
             (sweep, hparams, "hparams.png", "2240,520"),  # wide: every metric column
             (seeds / "tb", story, "seeds.png", "1600,1100")]  # fmt: skip
    for logdir, page, name, size in shots:
        proc, url = serve(logdir)
        try:
            screenshot(url + page, OUT / name, size)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    if args.docs:
        for src, dst in [("run.png", "tensorboard.png"), ("hparams.png", "hparams.png")]:
            shutil.copy(OUT / src, REPO / "docs" / dst)
        from PIL import Image  # 256 colours: a quarter of the size, no visible change

        for src, dst in [(run / "hidden_units.png", "hidden_units.png"),
                         (OUT / "seeds.png", "tensorboard-sweep.png")]:  # fmt: skip
            Image.open(src).convert("RGB").quantize(256).save(REPO / "docs" / dst, optimize=True)
        print(
            "updated docs/tensorboard.png, docs/hparams.png, docs/hidden_units.png, "
            "docs/tensorboard-sweep.png"
        )


if __name__ == "__main__":
    main()
