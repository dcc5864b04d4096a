"""Shared fixtures and helpers: compose configs with Hydra's compose API in a temp dir,
run the CLI, read checkpoints and what TensorBoard shows."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from xor_lightning.config import CONF_DIR

try:  # the tests call the vectorised engine as its launcher does for xor-train's jobs
    from xor_vectorized import app

    app.use("xor_lightning")
except ImportError:  # the template without its plugins: their tests skip
    pass

Composer = Callable[..., DictConfig]
REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SLURM_SCRIPT = Path(__file__).with_name("slurm_cluster.sh")


# The README and the docs/ pages say what the project does; the tests read each claim from
# the page it is on (a path relative to the repo), so a claim that moves takes its test along.
def doc_block(page: str, after: str) -> list[str]:
    """The lines of the first fenced block in `page` after the line starting `after`."""
    lines = (REPO / page).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith(after))
    fence = next(i for i in range(start, len(lines)) if lines[i].lstrip().startswith("```"))
    end = next(i for i in range(fence + 1, len(lines)) if lines[i].lstrip().startswith("```"))
    indent = len(lines[fence]) - len(lines[fence].lstrip())
    return [line[indent:] for line in lines[fence + 1 : end]]


def readme_block(after: str, page: str = "README.md") -> list[str]:
    """`doc_block` of the README, or of the docs page the text moved to."""
    return doc_block(page, after)


def doc_table(page: str, heading: str, table: int = 1) -> list[list[str]]:
    """The cells of the `table`-th Markdown table after the line `heading` in `page`, header
    and rule left out."""
    lines = (REPO / page).read_text().splitlines()
    tables: list[list[list[str]]] = []
    inside = False
    for line in lines[lines.index(heading) :]:
        if line.startswith("|"):
            if not inside:
                tables.append([])
            tables[-1].append([c.strip() for c in line.strip("|").split("|")])
        elif inside and len(tables) == table:
            break
        inside = line.startswith("|")
    return tables[table - 1][2:]


def compose_train(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def cli(
    module: str, *args: str, cwd: Path, timeout: int = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run `python -m xor_lightning.<module> *args` as a user would (no HYDRA_FULL_ERROR)."""
    return subprocess.run(
        [sys.executable, "-m", f"xor_lightning.{module}", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"} | (env or {}),
    )


def load(path: Path) -> dict:
    """A checkpoint, loaded the safe way (as the project does)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until `path` exists; fail if `proc` exits first or the time runs out."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)


def compose_app(name: str, *overrides: str) -> DictConfig:
    """Compose evaluate/predict/export's config (no Hydra run, so no run dir)."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


# The files whose tests share the one-node SLURM cluster (`slurm_env`): one worker runs them.
SLURM_FILES = ("tests/test_slurm.py", "tests/test_slurm_vectorized.py")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under `pytest -n auto` (pytest-xdist, as `make test` runs): each file's tests on one
    worker, so a file's module fixtures are made once, and the SLURM files' on one worker,
    so one cluster serves them (a second would refuse to start beside it)."""
    if config.getvalue("dist") != "load":
        return None  # a --dist of the command line's own choosing
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # the collection's order, set below

    class ByFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return worker_scope(nodeid)

    return ByFile(config, log)


@pytest.hookimpl(trylast=True)  # after pytest's own ordering by fixture
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The order `-n auto` hands the files out in: the SLURM files first (they mostly wait
    on the cluster, and the other workers fill the cores meanwhile), then the files with
    the most slow tests, so that no long file is left running alone at the end."""
    slow = Counter(worker_scope(i.nodeid) for i in items if i.get_closest_marker("slow"))

    def order(item: pytest.Item) -> tuple[bool, int]:
        scope = worker_scope(item.nodeid)
        return scope != "slurm", -slow[scope]

    items.sort(key=order)


def worker_scope(nodeid: str) -> str:
    """The tests that one worker runs together: a file's, or every SLURM file's."""
    file = nodeid.split("::", 1)[0]
    return "slurm" if file in SLURM_FILES else file


@pytest.fixture(scope="session")
def slurm_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Start the cluster once for every test that needs it (one per module found the
    previous module's daemons still stopping, and skipped); the environment that points
    at it."""
    if shutil.which("slurmctld") is None or shutil.which("sbatch") is None:
        pytest.skip(f"SLURM is not installed (as root: {SLURM_SCRIPT.name} install)")
    d = tmp_path_factory.mktemp("slurm")
    proc = subprocess.run(
        ["bash", str(SLURM_SCRIPT), "start", str(d)], capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        pytest.skip(f"the one-node SLURM cluster did not start: {proc.stderr.strip()}")
    try:
        yield {"SLURM_CONF": str(d / "slurm.conf")}
    finally:
        subprocess.run(["bash", str(SLURM_SCRIPT), "stop", str(d)], capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def trained_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint from a short real run (20 epochs of XOR), shared by the tests."""
    from xor_lightning.train import train

    out = tmp_path_factory.mktemp("trained")
    train(compose_train(f"paths.output_dir={out}", "debug=quick", "trainer.max_epochs=60"))
    return out / "checkpoints" / "last.ckpt"


@pytest.fixture
def make_cfg(tmp_path: Path) -> Composer:
    """Compose the train config with its outputs in this test's temp dir."""

    def make(*overrides: str, out: Path | None = None) -> DictConfig:
        return compose_train(f"paths.output_dir={out or tmp_path}", *overrides)

    return make


class Recorder(Logger):
    """A logger that keeps what Lightning hands every logger: (step, metrics) per call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int | None, dict[str, float]]] = []
        self.hparams: dict = {}

    @property
    def name(self) -> str:
        return "recorder"

    @property
    def version(self) -> int:
        return 0

    @property
    def experiment(self) -> None:
        return None

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.calls.append((step, dict(metrics)))

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self.hparams.update(params)

    def series(self, key: str) -> list[float]:
        return [m[key] for _, m in self.calls if key in m]


def fit(
    cfg: DictConfig, *callbacks: L.Callback, module: L.LightningModule | None = None
) -> tuple[L.Trainer, L.LightningModule, Recorder]:
    """Build what `cfg` names, add `callbacks`, fit with a `Recorder` as the only logger."""
    from xor_lightning.train import build

    trainer, built, datamodule = build(cfg)
    recorder = Recorder()
    trainer.loggers = [recorder]
    trainer.callbacks.extend(callbacks)
    trainer.fit(module or built, datamodule=datamodule)
    return trainer, module or built, recorder


def write_points(path: Path, n: int = 200, seed: int = 0, header: bool = True) -> Path:
    """A CSV of XOR points with labels (x1,x2,label), as a user would bring their own."""
    from xor_lightning.data import make_xor

    X, y = make_xor(n, seed=seed)
    rows = [
        f"{a:.6f},{b:.6f},{int(c)}\n" for (a, b), c in zip(X.tolist(), y.flatten(), strict=True)
    ]
    path.write_text(("x1,x2,label\n" if header else "") + "".join(rows))
    return path


def curves(run_dir: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Every scalar TensorBoard finds under `run_dir`: {run: {tag: [(step, value), ...]}}."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    mux = EventMultiplexer().AddRunsFromDirectory(str(run_dir))
    mux.Reload()
    return {
        run: {tag: [(e.step, e.value) for e in mux.Scalars(run, tag)] for tag in tags["scalars"]}
        for run, tags in mux.Runs().items()
        if tags["scalars"]
    }


def hparams_tab(logdir: Path) -> tuple[list[str], dict[str, dict[str, float]]]:
    """What TensorBoard's HPARAMS tab gets from its own backend: the hyperparameters in the
    order it lists them (it shows the first five), and each session's metric values."""
    from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams.hparams_plugin import HParamsPlugin
    from werkzeug.test import Client

    mux = EventMultiplexer().AddRunsFromDirectory(str(logdir))
    mux.Reload()
    provider = MultiplexerDataProvider(mux, str(logdir))
    context = base_plugin.TBContext(logdir=str(logdir), multiplexer=mux, data_provider=provider)
    apps = HParamsPlugin(context).get_plugin_apps()
    exp = Client(apps["/experiment"]).post("/", json={"experimentName": ""}).get_json()
    names = [h["name"] for h in exp["hparamInfos"]]
    cols = [{"metric": m["name"]} for m in exp["metricInfos"]] + [{"hparam": n} for n in names]
    request = {"experimentName": "", "colParams": cols, "startIndex": 0, "sliceSize": 100,
               "allowedStatuses": ["STATUS_SUCCESS"]}  # fmt: skip
    groups = Client(apps["/session_groups"]).post("/", json=request).get_json()["sessionGroups"]
    values = {
        s["name"]: {
            f"{m['name']['group']}/{m['name']['tag']}": m["value"] for m in s["metricValues"]
        }
        for g in groups
        for s in g["sessions"]
    }
    return names, values
