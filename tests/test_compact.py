"""Large vectorised fits without a dir per job (`xor_vectorized/compact.py`, `xor-unpack`)."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import cli, compose_train, curves, load
from tests.test_vectorized import VEC, same_checkpoint, sweep
from xor_lightning.checkpoint import relocate

# Tests of a capability around the core: `make test` runs them, `make test-fast` does not.
pytestmark = pytest.mark.slow

GRID = ("model.hidden=3,8", "seed=1,2", "trainer.max_epochs=30")
PACKED = "hydra.launcher.job_dirs_up_to=3"  # a fit of 4 models: more than 3, no job dirs


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    """The same four jobs, one fit each way: with job dirs (`full`) and without (`packed`)."""
    tmp = tmp_path_factory.mktemp("pair")
    full, packed = tmp / "full", tmp / "packed"
    sweep(*GRID, f"hydra.sweep.dir={full}", cwd=tmp, logger="tensorboard")
    sweep(*GRID, PACKED, f"hydra.sweep.dir={packed}", cwd=tmp, logger="tensorboard")
    return full, packed


def table(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


@pytest.mark.slow
def test_a_fit_above_the_size_writes_its_tables_and_one_fit_dir(pair):
    full, packed = pair
    assert sorted(p.name for p in packed.iterdir() if p.name.isdigit()) == []
    fit = packed / "fits" / "fit0"
    assert sorted(p.name for p in fit.iterdir()) == [".lock", "curves.parquet", "fit.pt",
                                                     "jobs.json"]  # fmt: skip
    assert sorted(p.name for p in full.iterdir() if p.name.isdigit()) == ["0", "1", "2", "3"]
    # the same fit, so the same numbers: rows and curves equal those read from job dirs
    rows, theirs = (
        [{k: v for k, v in r.items() if k != "wall_s"} for r in table(d / "results.parquet")]
        for d in (packed, full)
    )
    assert rows == theirs
    assert [r["status"] for r in rows] == ["ok"] * 4 and rows[3]["model.hidden"] == 8
    assert table(packed / "curves.parquet") == table(full / "curves.parquet")
    # a small fit: each job's train loss, acc and lr every epoch, val every 10, best, test
    assert len(table(packed / "curves.parquet")) == 4 * (30 * 3 + 3 * 2 + 2 + 2)
    assert (packed / "tb" / "fit0" / "mean").is_dir()  # the fit's TensorBoard summary


def _same_file_text(a: Path, b: Path, old: str, new: str) -> None:
    assert a.read_text().replace(old, new) == b.read_text(), a.name


@pytest.mark.slow
def test_xor_unpack_writes_a_job_dir_equal_to_the_full_output(pair, tmp_path):
    full, packed = pair
    proc = subprocess.run([sys.executable, "-m", "xor_vectorized.unpack", str(packed), "2"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [str((packed / "2").resolve())]
    mine, theirs = packed / "2", full / "2"
    old, new = str(packed.resolve()), str(full.resolve())
    names = lambda d: sorted(p.name for p in (d / "checkpoints").iterdir())  # noqa: E731
    assert names(mine) == names(theirs) and len(names(mine)) == 2  # best and last
    for name in names(theirs):
        same_checkpoint(load(theirs / "checkpoints" / name),
                        relocate(load(mine / "checkpoints" / name), old, new))  # fmt: skip
    assert json.loads((mine / "metrics.json").read_text()) == json.loads(
        (theirs / "metrics.json").read_text()
    )
    for name in ("config.yaml", "overrides.yaml"):
        _same_file_text(mine / ".hydra" / name, theirs / ".hydra" / name, old, new)
    hydra = [yaml.safe_load((d / ".hydra" / "hydra.yaml").read_text()) for d in (mine, theirs)]
    assert relocate(hydra[0], old, new)["hydra"]["job"] == hydra[1]["hydra"]["job"]
    _same_file_text(mine / "hparams.yaml", theirs / "hparams.yaml", old, new)
    record = [json.loads((d / "job.json").read_text()) for d in (mine, theirs)]
    for r in record:
        r.pop("wall_s"), r["vectorized"].pop("fit_s")
    assert record[0] == record[1]
    assert curves(mine) == curves(theirs)  # TensorBoard's per-job runs
    # the unpacked job is a run like any other: it evaluates
    best = next((mine / "checkpoints").glob("best-*.ckpt"))
    ev = cli("tools.evaluate", f"ckpt_path={best}", f"hydra.run.dir={tmp_path}/ev", cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr[-2000:]
    # a job it does not hold: one line, exit 2
    bad = subprocess.run([sys.executable, "-m", "xor_vectorized.unpack", str(packed), "9"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"error: job 9 is not in a fit without job dirs under {packed} (its jobs: 0-3)"
    ]


@pytest.mark.slow
def test_a_rerun_keeps_finished_jobs_and_trains_changed_ones(tmp_path):
    d = tmp_path / "s"
    common = ("trainer.max_epochs=10", "hydra.launcher.job_dirs_up_to=0", f"hydra.sweep.dir={d}")
    sweep("seed=1,2", "model.optimizer.lr=0.05", *common, cwd=tmp_path)
    first = table(d / "results.parquet")
    proc = sweep("seed=1,3", "model.optimizer.lr=0.05,-1", *common, cwd=tmp_path)
    assert "1 job(s) finished in an earlier launch of this sweep: kept" in proc.stdout
    rows = {r["job"]: r for r in table(d / "results.parquet")}
    assert rows[0] == first[0]  # seed=1 lr=0.05: kept
    assert rows[2]["seed"] == 3 and rows[2]["status"] == "ok"  # job 2 changed: trained anew
    assert rows[1]["status"] == "failed" and "model.optimizer.lr" in rows[1]["error"]
    assert (d / "1" / "job.json").is_file()  # a refused job keeps its dir, as in any sweep
    assert sorted(p.name for p in (d / "fits").iterdir()) == ["fit0", "fit2"]


@pytest.mark.slow
def test_ctrl_c_leaves_the_fit_resumable_and_the_rerun_finishes_it(tmp_path):
    d = tmp_path / "s"
    args = ("seed=1,2", "trainer.max_epochs=300", "hydra.launcher.job_dirs_up_to=1",
            f"hydra.sweep.dir={d}")  # fmt: skip
    log = tmp_path / "log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "xor_lightning.train", "-m", VEC,
                                 "logger=none", *args], cwd=tmp_path, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip
        while "epoch    0" not in log.read_text():
            assert proc.poll() is None
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=120) == 128 + signal.SIGINT
    fit = d / "fits" / "fit0"
    step = load(fit / "last.ckpt")["global_step"]
    assert 0 < step < 300
    assert {r["status"] for r in table(d / "results.parquet")} == {"interrupted"}
    proc = sweep(*args, cwd=tmp_path)
    assert "resumed from its last.ckpt" in proc.stdout
    assert not (fit / "last.ckpt").exists()  # finished: nothing left to resume
    rows = table(d / "results.parquet")
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert [r["best_epoch"] is not None for r in rows] == [True, True]
    # the curves run from epoch 0 to the last, across the interruption
    points = [r for r in table(d / "curves.parquet") if r["stage"] == "val" and r["job"] == 0]
    assert sorted(r["epoch"] for r in points if r["metric"] == "acc") == list(range(9, 300, 10))


def test_periodic_saves_leave_the_fit_resumable_after_a_kill(tmp_path):
    """`last_every_n_epochs` with a fit without job dirs: the stacked module's own
    checkpoint every n epochs, holding the curves so far, which a new fit resumes from."""
    from omegaconf import OmegaConf

    from xor_vectorized.compact import PeriodicLast
    from xor_vectorized.fit import fit_group

    composed = [compose_train(f"seed={s}", "trainer.max_epochs=25", "logger=none",
                              f"paths.output_dir={tmp_path / str(s)}") for s in (1, 2)]  # fmt: skip
    cfgs = [OmegaConf.to_container(c, resolve=True) for c in composed]
    fit_group(cfgs, str(tmp_path), callbacks=[PeriodicLast(tmp_path, 10)])
    ckpt = load(tmp_path / "last.ckpt")
    assert ckpt["global_step"] == 20 and len(ckpt["stacked_history"]["train/loss"]) == 20
    again = fit_group(cfgs, str(tmp_path), resume=tmp_path / "last.ckpt")
    epochs, values = again.series("train/loss")
    assert epochs.tolist() == list(range(25)) and values.shape == (25, 2)


class Runs:
    """An object that makes `path` (a dir) when it is unpickled: what an altered file in a
    sweep dir could do with any function in place of `os.mkdir`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (str(self.path),))


def fit_record(d: Path, *rows: dict, name: str = "fit0") -> Path:
    """A sweep dir `d` whose fit `name` lists `rows` in its jobs.json (no fit.pt)."""
    fit = d / "fits" / name
    fit.mkdir(parents=True)
    (fit / "jobs.json").write_text(json.dumps({"written": 1.0, "jobs": list(rows)}))
    return fit


def row(num: int, status: str = "ok", config: str = "c", **more) -> dict:
    return {"job": num, "overrides": [f"seed={num}"], "config": config, "status": status, **more}


def unpack_cli(*args: str, capsys) -> tuple[int, str, str]:
    """`xor-unpack args`, in this process: (exit status, stdout, stderr)."""
    from xor_vectorized.unpack import main

    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def earlier_format(path: Path) -> None:
    """A fit.pt as an earlier version wrote it: the stacked network pickled as an object,
    the configs as a pickle's bytes."""
    import pickle

    import torch

    from xor_lightning.model import MLP
    from xor_vectorized.net import StackedMLP

    net = StackedMLP([MLP(hidden=3), MLP(hidden=8)], ["tanh", "tanh"])
    torch.save({"result": {"epoch": 3, "net": net}, "base": pickle.dumps({"resolved": {}})}, path)


@pytest.mark.parametrize("kind", ["runs code", "earlier format", "cut short"])
def test_xor_unpack_reads_a_fit_pt_as_data_only(tmp_path, capsys, kind):
    """A fit.pt that asks to run code when loaded is refused before any of it runs (the
    dir it would make is not there); one of the earlier format (a pickled network) and one
    cut short are refused too, each in one line, exit 2, no job dir written."""
    import torch

    d, marker = tmp_path / "s", tmp_path / "ran"
    fit = fit_record(d, row(0))
    if kind == "runs code":
        torch.save({"format": 2, "result": Runs(marker)}, fit / "fit.pt")
        says = f"refusing {fit / 'fit.pt'}: loading it would run code (posix.mkdir)"
    elif kind == "earlier format":
        earlier_format(fit / "fit.pt")
        says = f"{fit / 'fit.pt'} was written by an earlier version, which pickled the stacked"
    else:
        torch.save({"format": 2, "jobs": list(range(1000))}, fit / "fit.pt")
        (fit / "fit.pt").write_bytes((fit / "fit.pt").read_bytes()[:300])
        says = f"{fit / 'fit.pt'} cannot be read as a fit.pt (cut short or altered"
    code, out, err = unpack_cli(str(d), "0", capsys=capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: {says}") and "Traceback" not in err
    rerun = "rerun the sweep (its command, the same hydra.sweep.dir) to train them again"
    assert err.strip().endswith(f"its jobs' dirs cannot be unpacked: {rerun}")
    assert not marker.exists() and not (d / "0").exists()


class Hooks:
    def started(self, jobs):
        pass

    def job_return(self, job, value, failed=False):
        return value

    def ended(self, job, ret):
        pass


def test_a_rerun_keeps_no_job_whose_fit_pt_cannot_be_read_as_data(tmp_path, caplog):
    """The same finished jobs are kept only when their dirs can still be unpacked: a
    fit.pt that would run code, or of the earlier format, is not loaded and its jobs train
    again, said in one line; one of this format keeps its jobs."""
    import torch

    from xor_vectorized import compact
    from xor_vectorized.run import Job

    marker = tmp_path / "ran"
    d = tmp_path / "s"
    fit_record(d, row(0), row(1), name="fit0")
    fit_record(d, row(2), name="fit2")
    torch.save({"result": Runs(marker)}, d / "fits" / "fit0" / "fit.pt")
    earlier_format(d / "fits" / "fit2" / "fit.pt")
    jobs = [Job(n, [f"seed={n}"], d / str(n), digest="c", key="k") for n in range(3)]
    trained, returns = [], {}
    settings = {"max_models_per_fit": 16, "job_dirs_up_to": 0}
    compact.run(jobs, settings, d, "val/acc", Hooks(), returns,
                lambda g, chunk, path: trained.append([j.num for j in chunk]))  # fmt: skip
    assert trained == [[0, 1, 2]] and not returns and not marker.exists()
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 2 and all("\n" not in w for w in warned)
    assert warned[0].startswith(f"refusing {d / 'fits' / 'fit0' / 'fit.pt'}: loading it would")
    assert warned[0].endswith(": its 2 job(s) train again")
    assert "earlier version" in warned[1] and warned[1].endswith("its 1 job(s) train again")


def test_a_resumed_fit_is_the_same_jobs_in_the_same_order_and_its_checkpoint_is_data(
    tmp_path, caplog
):
    """`prepare` resumes from the fit's last.ckpt only for the same jobs (overrides and
    config digest) in the same order, with a checkpoint read as data, of as many models;
    anything else empties the dir and the fit starts again."""
    import torch

    from xor_vectorized.compact import prepare
    from xor_vectorized.run import Job

    fit = tmp_path / "fit0"

    def stopped(ckpt) -> None:
        """The fit dir as a fit of jobs 0 and 1 (configs a, b) stopped by Ctrl-C left it."""
        if fit.exists():
            shutil.rmtree(fit)
        fit_record(tmp_path, row(0, "interrupted", "a"), row(1, "interrupted", "b"))
        shutil.move(tmp_path / "fits" / "fit0", fit)
        torch.save(ckpt, fit / "last.ckpt")

    two = {"global_step": 4, "state_dict": {"net.weights.0": torch.zeros(2, 8, 2)}}
    job = lambda n, c: Job(n, [f"seed={n}"], tmp_path / str(n), digest=c)  # noqa: E731
    stopped(two)
    assert prepare(fit, [job(0, "a"), job(1, "b")]) == fit / "last.ckpt"
    for chunk, ckpt in (([job(0, "a"), job(1, "edited")], two),  # a config edited since
                        ([job(1, "b"), job(0, "a")], two),  # model 0 is job 0's
                        ([job(0, "a")], two),  # another set of jobs
                        ([job(0, "a"), job(1, "b")], {**two, "x": Runs(tmp_path / "ran")}),
                        ([job(0, "a"), job(1, "b")], {**two, "state_dict": {
                            "net.weights.0": torch.zeros(3, 8, 2)}})):  # fmt: skip
        stopped(ckpt)
        assert prepare(fit, chunk) is None
        assert not (fit / "last.ckpt").exists() and not (tmp_path / "ran").exists()
        record = json.loads((fit / "jobs.json").read_text())["jobs"]
        assert [(r["job"], r["config"], r["status"]) for r in record] == [
            (j.num, j.digest, "running") for j in chunk
        ]
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warned == [
        f"refusing {fit / 'last.ckpt'}: loading it would run code (posix.mkdir); a checkpoint "
        "holds data only: the fit starts again",
        f"{fit / 'last.ckpt'} is not a checkpoint of this fit's 2 models: the fit starts again",
    ]


def test_a_fit_dir_is_reused_only_for_the_same_jobs(tmp_path):
    """`fits/fit<N>` is the chunk's only when it holds exactly the chunk's jobs (a rerun
    that changed them all) or nothing yet; one holding other jobs keeps them, the chunk
    going to `fit<N>.1`, `.2`... (a rerun that changed some jobs of an earlier fit)."""
    from xor_vectorized.compact import fit_dir
    from xor_vectorized.run import Job

    d = tmp_path / "s"
    chunk = lambda *nums: [Job(n, [], d / str(n)) for n in nums]  # noqa: E731
    assert fit_dir(d, chunk(3, 0, 1)) == d / "fits" / "fit0"  # nothing there yet
    fit_record(d, row(0), row(1), row(2), row(3))
    assert fit_dir(d, chunk(3, 0, 1, 2)) == d / "fits" / "fit0"  # the same jobs
    assert fit_dir(d, chunk(0, 1)) == d / "fits" / "fit0.1"  # 2 and 3 stay in fit0
    fit_record(d, row(0), row(1), row(2), name="fit0.1")
    assert fit_dir(d, chunk(0, 1)) == d / "fits" / "fit0.2"
    (d / "fits" / "fit0.2").mkdir()  # made, then killed before its jobs.json was written
    assert fit_dir(d, chunk(0, 1)) == d / "fits" / "fit0.2"
    assert fit_dir(d, chunk(0, 1, 2)) == d / "fits" / "fit0.1"


@pytest.mark.parametrize(
    ("words", "says"),
    [
        (["3-1"], "'3-1' is not a range of jobs: 3 comes after 1 (use FIRST-LAST, the first the "
                  "lower, such as 10-20)"),
        (["0-100000000000"], "job 2 is not in a fit without job dirs under {d} (its jobs: 0-1, 5)"),
        (["5", "1-3"], "job 2 is not in a fit without job dirs under {d} (its jobs: 0-1, 5)"),
        (["٣"], "'٣' is not a job number or a range of them (such as 10-20)"),
    ],
    ids=["backwards", "huge", "missing", "other digits"],
)  # fmt: skip
def test_xor_unpack_refuses_jobs_it_cannot_write_in_one_line(tmp_path, capsys, words, says):
    """A range backwards, one far larger than the sweep (never spelled out), a job no fit
    holds, a number in other digits: one line each, exit 2, before any file is read."""
    d = tmp_path / "s"
    fit_record(d, row(0), row(1), row(5))
    code, out, err = unpack_cli(str(d), *words, capsys=capsys)
    assert (code, out, err) == (2, "", f"error: {says.format(d=d)}\n")
    assert sorted(p.name for p in d.iterdir()) == ["fits"]


@pytest.fixture(scope="module")
def linked(tmp_path_factory) -> tuple[Path, Path]:
    """A fit of two jobs without job dirs, the second diverging (failed), its sweep dir
    given as a symlink: (the link, the dir it points to)."""
    tmp = tmp_path_factory.mktemp("linked")
    real, link = tmp / "real", tmp / "link"
    real.mkdir()
    link.symlink_to(real)
    sweep("model.optimizer.lr=0.05,1e38", "trainer.max_epochs=6", "hydra.launcher.job_dirs_up_to=1",
          f"hydra.sweep.dir={link}", cwd=tmp)  # fmt: skip
    return link, real


def unpack_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xor_vectorized.unpack", *args],
                          capture_output=True, text=True, timeout=300)  # fmt: skip


@pytest.mark.slow
def test_xor_unpack_empties_a_dir_holding_another_jobs_outputs(linked):
    """Job 1 failed in the fit; its dir held another job's outputs (a sweep of other
    overrides into the same dir): they are removed under its lock, so that its row in the
    summary is its own (failed, no metrics), not the other job's."""
    from xor_lightning.sweeps.summary import summarize

    link, real = linked
    other = real / "1"
    other.mkdir()
    (other / "job.json").write_text(json.dumps({"job": 1, "overrides": ["seed=7"],
                                                "config": "0123", "status": "ok"}))  # fmt: skip
    (other / "metrics.json").write_text(json.dumps({"val/acc": 0.99, "test/acc": 0.98}))
    (other / "notes.txt").write_text("theirs\n")
    proc = unpack_run(str(link), "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"job 1: {link / '1'} held another job's outputs (seed=7): removed" in proc.stderr
    assert not (other / "metrics.json").exists() and not (other / "notes.txt").exists()
    record = json.loads((other / "job.json").read_text())
    assert record["status"] == "failed" and "model.optimizer.lr=1e+38" in record["overrides"]
    [mine] = [r for r in summarize(link) if r["job"] == 1]
    assert mine["status"] == "failed" and "val/acc" not in mine and "test/acc" not in mine


@pytest.mark.slow
def test_xor_unpack_writes_no_dir_when_one_of_them_cannot_be(linked):
    """Every job's dir is held before any is written: job 1's dir being a regular file, job
    0's is not written either (nor left made and empty), and the refusal is one line."""
    link, real = linked
    for job in ("0", "1"):
        shutil.rmtree(real / job, ignore_errors=True)
    (real / "1").write_text("mine\n")
    try:
        proc = unpack_run(str(link), "0-1")
    finally:
        (real / "1").unlink()
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"error: {link / '1'} cannot be written: {link / '1'} is a file, not a dir"
    ]
    assert not (real / "0").exists()


@pytest.mark.slow
def test_a_symlinked_sweep_dir_keeps_hydras_paths(linked):
    """A job's dir is where Hydra puts it, `os.path.abspath(<sweep dir>/<job>)`, the
    symlink kept as it was given (not resolved to the dir it points to)."""
    from xor_vectorized import fitfile

    link, _ = linked
    saved = fitfile.load(link / "fits" / "fit0")
    assert [j["dir"] for j in saved["jobs"]] == [os.path.join(link, "0"), os.path.join(link, "1")]
    proc = unpack_run(str(link), "0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == [os.path.join(link, "0")]
    assert (link / "0" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_xor_unpack_refuses_a_config_naming_any_other_function(linked, tmp_path):
    """A fit.pt of data only, its configs altered to name a function a Trainer would call
    (a callback's `_target_`): refused in one line before anything is built."""
    import torch

    link, _ = linked
    fit = link / "fits" / "fit0" / "fit.pt"
    before, marker = fit.read_bytes(), tmp_path / "ran"
    saved = torch.load(fit, weights_only=True)
    saved["base"]["resolved"]["callbacks"]["mine"] = {"_target_": "os.mkdir", "path": str(marker)}
    torch.save(saved, fit)
    try:
        proc = unpack_run(str(link), "0")
    finally:
        fit.write_bytes(before)
    assert proc.returncode == 2 and not marker.exists()
    assert proc.stderr.splitlines() == [
        f"error: refusing {fit}: a job's config names callbacks.mine._target_='os.mkdir', which "
        "no config file of the project names there; its jobs' dirs cannot be unpacked: rerun "
        "the sweep (its command, the same hydra.sweep.dir) to train them again"
    ]
