"""What the README and docs/ say about the project's shape holds: the README's size, links and
reading order; make targets, files, pins, examples."""

import importlib.metadata
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import torch
from hydra import compose, initialize_config_dir

from tests.conftest import (
    REPO,
    SLURM_FILES,
    doc_block,
    doc_table,
    pytest_collection_modifyitems,
    worker_scope,
)
from xor_lightning.checkpoint import build_net, load_checkpoint
from xor_lightning.config import CONF_DIR
from xor_lightning.errors import UserError
from xor_lightning.validate import validate_train

# What `make -n <target>` must print for each target of docs/make-targets.md's table.
PRINTS = {
    "train": [r"\bxor-train\b"],
    "sweep": [r"xor-train -m model.hidden=4,8 model.optimizer.lr=0.01,0.05,0.1"],
    "eval": [r"xor-eval ckpt_path=x\.ckpt"],
    "predict": [r"xor-predict ckpt_path=x\.ckpt 'points=\[\[0\.6,-0\.7\]\]'"],
    "export": [r"xor-export ckpt_path=x\.ckpt format=onnx"],
    "tensorboard": [r"tensorboard --logdir outputs --host 127\.0\.0\.1 --port 6006"],
    "intro": [r"-m xor_lightning\.intro$"],
    "gotchas": [r"-m xor_lightning\.intro gotchas"],
    "test": [r"ruff check", r"ruff format --check", r"OMP_NUM_THREADS=1 \S+ -m pytest -n auto\s*$"],
    "test-fast": [
        r"ruff check",
        r"ruff format --check",
        r'OMP_NUM_THREADS=1 \S+ -m pytest -n auto -m "not slow"',
    ],
    "lint": [r"ruff check", r"ruff format --check"],
    "bench": [r"bench/bench\.py"],
    "screenshots": [r"docs/screenshots\.py"],
    "seeds": [r"-m xor_lightning\.sweeps\.seeds --seeds 1000"],
    "map": [r"-m xor_lightning\.sweeps\.trainmap --res 64"],
    "install": [r"Nothing to be done|pip install .*-c constraints\.txt"],
    "format": [r"ruff format src"],
    "clean": [r"find outputs"],
    "help": [r"grep"],
}


def make_n(command: str) -> str:
    args = shlex.split(command.replace("<file>", "x.ckpt").replace(" ...", ""))
    # --no-print-directory: under `make test` this make is nested and would say where it is
    proc = subprocess.run(["make", "-n", "--no-print-directory", *args[1:]], cwd=REPO,
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def table_commands() -> list[str]:
    return [
        c
        for row in doc_table("docs/make-targets.md", "# Make targets")
        for c in re.findall(r"`(make [^`]*)`", row[0])
    ]


def test_the_make_table_lists_every_target():
    help_ = subprocess.run(["make", "help"], cwd=REPO, capture_output=True, text=True).stdout
    targets = set(re.findall(r"^  make ([\w-]+) ", help_, re.M))
    assert {c.split()[1] for c in table_commands()} == targets == set(PRINTS)


@pytest.mark.parametrize("command", table_commands())
def test_each_make_command_of_the_table_runs_what_it_says(command):
    printed = make_n(command)
    for pattern in PRINTS[command.split()[1]]:
        assert re.search(pattern, printed, re.M), printed
    if "accelerator=gpu" in command:
        assert "trainer.accelerator=gpu" in printed
    if "VENV= " in command:  # the environment python3 belongs to
        assert printed.startswith(str(Path(shutil.which("python3")).parent / "xor-train"))


def test_make_test_runs_each_file_and_every_slurm_file_on_one_worker():
    """`make test` (pytest -n auto) hands pytest-xdist a scheduler (conftest.py) that keeps
    a file's tests on one worker and the files using the one SLURM cluster on one worker."""
    scheduler = pytest.importorskip("xdist.scheduler", reason="pytest-xdist is a dev dependency")

    overridden = getattr(scheduler.LoadScopeScheduling, "_split_scope", None)  # by ByFile
    assert callable(overridden)
    a, b = "tests/test_data.py::test_a[1]", "tests/test_data.py::test_b"
    assert worker_scope(a) == worker_scope(b) != worker_scope("tests/test_model.py::test_a")
    using = {f"tests/{p.name}" for p in (REPO / "tests").glob("test_*.py")
             if re.search(r"def test_\w+\([^)]*\bslurm_env\b", p.read_text())}  # fmt: skip
    assert using == set(SLURM_FILES)
    assert {worker_scope(f"{f}::test_x") for f in SLURM_FILES} == {"slurm"}


def test_make_test_hands_out_the_slurm_files_then_the_files_with_most_slow_tests():
    class Item:
        def __init__(self, nodeid: str, slow: bool) -> None:
            self.nodeid, self.slow = nodeid, slow

        def get_closest_marker(self, name: str) -> object | None:
            return object() if self.slow and name == "slow" else None

    files = {"tests/test_a.py": [True, False, False], "tests/test_b.py": [True, True],
             "tests/test_c.py": [False], SLURM_FILES[1]: [True]}  # fmt: skip
    items = [Item(f"{f}::t{i}", slow) for f, marks in files.items() for i, slow in enumerate(marks)]
    pytest_collection_modifyitems(items)
    order = [i.nodeid.split("::")[0] for i in items]
    assert list(dict.fromkeys(order)) == [SLURM_FILES[1], "tests/test_b.py", "tests/test_a.py",
                                          "tests/test_c.py"]  # fmt: skip
    assert [i.nodeid for i in items if "test_a" in i.nodeid] == [
        f"tests/test_a.py::t{i}" for i in range(3)
    ]


def test_make_reinstalls_only_when_pyproject_or_constraints_change(tmp_path):
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        shutil.copy2(REPO / name, tmp_path / name)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    stamp = venv / ".installed"
    stamp.touch()
    now = stamp.stat().st_mtime
    os.utime(stamp, (now, now))
    for name in ("constraints.txt", "pyproject.toml"):  # installed after their last change
        os.utime(tmp_path / name, (now - 60, now - 60))

    def install_commands() -> str:
        return subprocess.run(["make", "-n", "install", f"VENV={venv}"], cwd=tmp_path,
                              capture_output=True, text=True).stdout  # fmt: skip

    assert "pip install" not in install_commands()
    for name in ("constraints.txt", "pyproject.toml"):
        os.utime(tmp_path / name, (now + 60, now + 60))  # changed since
        assert "pip install" in install_commands()
        os.utime(tmp_path / name, (now - 60, now - 60))


def test_the_file_table_lists_every_module():
    files = set()
    for row in doc_table("docs/layout.md", "# Where things live"):
        cells = re.findall(r"`([^`]+)`", row[0])  # `src/x/evaluate.py`, `predict.py`: one dir
        base = Path(cells[0]).parent
        files |= {cells[0], *(str(base / c) for c in cells[1:])}
    assert not [f for f in files if not (REPO / f).exists()]
    modules = {str(p.relative_to(REPO)) for p in (REPO / "src" / "xor_lightning").glob("*.py")}
    assert modules - {"src/xor_lightning/__init__.py"} <= files


def test_every_dependency_is_pinned_and_installed_at_its_pin():
    pins = dict(
        line.split("==") for line in (REPO / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )  # fmt: skip
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    for requirement in wanted:
        name = re.match(r"[\w.-]+", requirement)[0].lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned in constraints.txt"
        assert importlib.metadata.version(name).split("+")[0] == pins[name]
    assert pins["torch"] == torch.__version__.split("+")[0] and "+cpu" in torch.__version__


def test_the_configuration_errors_shown_are_the_ones_given(make_cfg):
    shown = doc_block(
        "docs/runs-and-checkpoints.md",
        "- **Bad configuration is refused before anything is built**",
    )
    pairs = list(zip(shown[0::2], shown[1::2], strict=True))
    assert len(pairs) == 3
    for command, error in pairs:
        overrides = command.removeprefix("$ xor-train ").split()
        with pytest.raises(UserError, match=f"^{re.escape(error.removeprefix('error: '))}$"):
            validate_train(make_cfg(*overrides))


def runs_python(n: int) -> str:
    """The `n`-th Python block of docs/runs-and-checkpoints.md (loading a checkpoint)."""
    page = (REPO / "docs" / "runs-and-checkpoints.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, re.S)
    return blocks[n]


@pytest.mark.parametrize("block", [0, 1], ids=["lightning", "plain"])
def test_the_checkpoint_examples_run_and_give_the_trained_network(trained_ckpt, block):
    code = runs_python(block).replace("outputs/runs/.../checkpoints/last.ckpt", str(trained_ckpt))
    scope: dict = {}
    exec(code, scope)
    x = torch.rand(50, 2) * 2 - 1
    with torch.no_grad():
        expected = build_net(load_checkpoint(trained_ckpt))(x)
        net = scope["model"] if block == 0 else scope["net"]
        torch.testing.assert_close(net(x), expected)
    if block == 0:  # the run's test set: 400 points of seed 0, split 2 (docs/data.md's rule)
        from xor_lightning.data import make_xor

        assert torch.equal(scope["data"].datasets["test"].X, make_xor(400, seed=0, split=2)[0])


@pytest.mark.parametrize("app", ["evaluate", "predict", "export"])
def test_each_app_has_its_run_dirs_under_outputs(app):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(app, return_hydra_config=True)
    assert re.fullmatch(rf"outputs/{app}/\d{{4}}-\d\d-\d\d_\d\d-\d\d-\d\d_\d+", cfg.hydra.run.dir)


def test_no_scipy_in_the_environment():
    assert importlib.util.find_spec("scipy") is None  # torchmetrics would import it


def test_hydras_plugin_scan_imports_neither_torch_nor_lightning_nor_optuna():
    """Hydra imports every module of every installed plugin on each start: a plugin module
    that imported Lightning at its top (the Optuna pruning callback did) cost 2 to 3 s."""
    heavy = "('torch', 'lightning', 'optuna')"
    code = ("import sys\nfrom hydra.core.plugins import Plugins\nPlugins.instance()\n"
            f"print(sorted(m for m in {heavy} if m in sys.modules))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "[]", proc.stderr


@pytest.mark.slow
def test_lightning_is_not_imported_before_hydra_has_parsed_the_command_line():
    code = "import sys, xor_lightning.train; print([m for m in sys.modules if m == 'lightning'])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "[]", proc.stderr
