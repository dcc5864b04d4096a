"""Which app the engine stacks: the package of a task function `main` in `<package>.train`,
when that package has every module the engine reads (`xor_vectorized/app.py`); and the
engine reads that package's modules, whatever it is called."""

from __future__ import annotations

import importlib
import sys

import pytest

from xor_vectorized import app


@pytest.fixture
def fake_app(tmp_path, monkeypatch):
    """A package `fakeapp` with the contract's modules, on sys.path; its `train.main`."""
    root = tmp_path / "fakeapp"
    for name in app.CONTRACT:
        path = root.joinpath(*name.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in [path.parent, *path.parent.parents]:
            if parent == tmp_path:
                break
            (parent / "__init__.py").touch()
        path.write_text(f"WHO = {name!r}\n")
    (root / "train.py").write_text("WHO = 'train'\n\ndef main(cfg):\n    return 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield root
    for name in [m for m in sys.modules if m == "fakeapp" or m.startswith("fakeapp.")]:
        del sys.modules[name]


def test_an_app_with_the_contracts_modules_is_stacked_and_read_by_name(fake_app):
    main = importlib.import_module("fakeapp.train").main
    assert app.package_of(main) == "fakeapp"
    before = app._package
    try:
        app.use("fakeapp")
        assert app.read("sweeps.summary").WHO == "sweeps.summary"
        assert app.target("model", "MLP") == "fakeapp.model.MLP"
    finally:
        app._package = before


def test_an_app_without_a_module_of_the_contract_is_not_stacked(fake_app):
    (fake_app / "lock.py").unlink()
    assert not app.offers("fakeapp")
    assert app.package_of(importlib.import_module("fakeapp.train").main) is None


def test_other_task_functions_are_not_stacked(fake_app):
    def main(cfg):  # a `main`, but not in a module `<package>.train`
        return cfg

    assert app.package_of(main) is None
    assert app.package_of(lambda cfg: 0) is None
    assert not app.offers("no_such_package_here")
