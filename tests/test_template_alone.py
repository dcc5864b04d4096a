"""The template without its plugins (`pip install -e .` alone): it trains, sweeps a grid
with its summary and scores a checkpoint; what needs a plugin is refused in one line that
names the package to install, before anything is made.

"Without its plugins" is this environment with the plugins' source dirs taken off
`sys.path` and Optuna made unimportable (a `sitecustomize.py`, which Python runs after the
site-packages' `.pth` files), so the plugins and what only they depend on are gone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from xor_lightning.config import CONF_DIR
from xor_lightning.plugins import PROVIDERS, installed, missing

HIDE = """
import sys
sys.path[:] = [p for p in sys.path if "/plugins/" not in p.replace("\\\\", "/")]


class _Hidden:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("optuna", "cmaes"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _Hidden())
"""


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    """Run `python -m <module> *args` in the template without its plugins."""
    site = tmp_path_factory.mktemp("site")
    (site / "sitecustomize.py").write_text(HIDE)
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["PYTHONPATH"] = str(site)

    def run(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip

    hidden = subprocess.run([sys.executable, "-c", "import optuna"], env=env, cwd=site,
                            capture_output=True, text=True)  # fmt: skip
    assert hidden.returncode != 0  # the emulation holds
    return run


def test_every_plugin_choice_is_a_real_config_of_an_installed_plugin():
    """What the refusal names exists once the plugins are installed (`make install`)."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        for choice, (module, _, where) in PROVIDERS.items():
            assert installed(module) and (Path(CONF_DIR).parent / where).is_dir()
            compose("train", [choice], return_hydra_config=True)
    assert missing(["seed=1", "hydra/launcher=vectorized"]) is None


@pytest.mark.slow
def test_the_template_alone_trains_sweeps_and_scores(alone, tmp_path):
    run_dir, sweep_dir = tmp_path / "run", tmp_path / "sweep"
    quick = ("debug=quick", "logger=none", "callbacks.boundary_plot=null")
    trained = alone("xor_lightning.train", *quick, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert json.loads((run_dir / "metrics.json").read_text())["test/acc"] > 0.9
    swept = alone("xor_lightning.train", "-m", "seed=1,2", *quick,
                  f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)  # fmt: skip
    assert swept.returncode == 0, swept.stderr[-2000:]
    rows = (sweep_dir / "summary.csv").read_text().splitlines()
    assert len(rows) == 3 and (sweep_dir / "results.parquet").is_file()
    best = next((run_dir / "checkpoints").glob("best-*.ckpt"))
    scored = alone("xor_lightning.tools.evaluate", f"ckpt_path={best}", cwd=tmp_path)
    assert scored.returncode == 0 and "test/acc" in scored.stdout + scored.stderr, scored.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "module, args, plugin",
    [
        ("xor_lightning.train", ["-m", "seed=1,2", "hydra/launcher=vectorized"], "xor_vectorized"),
        ("xor_lightning.train", ["hparams_search=xor_optuna"], "xor_optuna_sweeper"),
        ("xor_lightning.sweeps.seeds", ["--seeds", "2"], "xor_vectorized"),
        ("xor_lightning.sweeps.trainmap", ["--res", "2"], "xor_vectorized"),
    ],
)
def test_what_needs_a_plugin_is_refused_in_one_line(alone, tmp_path, module, args, plugin):
    proc = alone(module, *args, "hydra.sweep.dir=s", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # one line
    assert proc.stderr.startswith("error: ") and f"pip install -e plugins/{plugin}" in proc.stderr
    assert not (tmp_path / "s").exists() and not (tmp_path / "outputs").exists()
