"""A sweep's tables, results.parquet and curves.parquet: typed, complete, readable as they are.

Expected values come from each job's own `job.json`/`metrics.json` and from TensorBoard's
own reader (`curves` in conftest), not from the table writer.
"""

from __future__ import annotations

import ast
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import REPO, cli, curves, doc_block, write_points
from xor_lightning.sweeps import tables
from xor_lightning.tb_logger import StageLogger

# Tests of a capability around the core: `make test` runs them, `make test-fast` does not.
pytestmark = pytest.mark.slow


def hydra_reads(text: str) -> object:
    [override] = OverridesParser.create().parse_overrides([text])
    return override.value()


@given(st.one_of(st.integers(-(10**20), 10**20), st.floats(allow_nan=False, allow_infinity=False)))
def test_an_override_value_is_what_hydra_reads(number):
    # would fail if the fast path read "1e-05" or "007" otherwise than Hydra's grammar
    examples = ("a.b=007", "a.b=1_000", "a.b=-0.50", "a.b=1e5", "a.b=2.5E-3", "a.b=1.e3")
    for text in (f"a.b={number}", f"a.b={number!r}", *examples):
        key, value, _ = tables.parse_override(text)
        expected = hydra_reads(text)
        assert (key, value, type(value)) == ("a.b", expected, type(expected))


def test_override_keys_and_values_as_hydra_parses_them():
    assert tables.parse_override("+x@pkg='8'") == ("x@pkg", "8", "'8'")
    assert tables.parse_override("++flag=true")[:2] == ("flag", True)
    assert tables.parse_override("data=csv")[:2] == ("data", "csv")
    assert tables.parse_override("m.layers=[4,4]")[:2] == ("m.layers", [4, 4])
    assert tables.parse_override("m.x=null")[:2] == ("m.x", None)


def row(job, overrides, **fields):
    return {"job": job, "status": "ok", "overrides": overrides, "error": None, **fields}


def test_each_swept_key_is_a_column_of_its_type(tmp_path):
    rows = [
        row(1, ["lr=1", "hidden=8", "act=tanh", "flag=true", "w=8", "job=3"], best_epoch=4),
        row(0, ["lr=0.05", "hidden=2", "act=relu", "flag=false", "w=wide"], **{"val/acc": 0.75}),
        row(2, ["lr=1e-3", "act='1'", "w=[1,2]"], status="failed", error="E: bad", wall_s=0.5),
    ]
    results, _ = tables.write(tmp_path, rows, [])
    table = pq.read_table(results)
    types = {f.name: str(f.type) for f in table.schema}
    assert types == {
        "job": "int64", "status": "string", "overrides": "string",
        "lr": "double", "hidden": "int64", "act": "string", "flag": "bool",
        "w": "string", "override.job": "int64",
        "train/loss": "double", "val/loss": "double", "val/acc": "double",
        "test/loss": "double", "test/acc": "double",
        "best_epoch": "int64", "wall_s": "double", "error": "string",
    }  # fmt: skip
    got = table.to_pydict()
    assert got["job"] == [0, 1, 2]  # in job order
    assert got["lr"] == [0.05, 1.0, 0.001]  # 1 is an int to Hydra: widened among floats
    assert got["hidden"] == [2, 8, None]  # not swept in job 2: null
    assert got["act"] == ["relu", "tanh", "1"]  # a quoted '1' is the string 1
    assert got["flag"] == [False, True, None]
    assert got["w"] == ["wide", "8", "[1,2]"]  # mixed types: each as it was typed
    assert got["override.job"] == [None, 3, None]  # a key named like a column
    assert got["val/acc"] == [0.75, None, None]
    assert got["best_epoch"] == [None, 4, None]
    assert got["status"] == ["ok", "ok", "failed"] and got["error"] == [None, None, "E: bad"]
    assert got["overrides"][1] == "lr=1 hidden=8 act=tanh flag=true w=8 job=3"


def test_curves_from_rows_or_columns_are_the_same_table(tmp_path):
    points = [(0, "train", 0, 3, "loss", 0.7), (1, "val", 4, 19, "acc", 0.5)]
    _, from_rows = tables.write(tmp_path, [row(0, [])], points)
    rows_table = pq.read_table(from_rows)
    columns = {c: [p[i] for p in points] for i, c in enumerate(tables.CURVE_COLUMNS)}
    _, from_columns = tables.write(tmp_path, [row(0, [])], columns)
    assert pq.read_table(from_columns).equals(rows_table)
    assert rows_table.column_names == ["job", "stage", "epoch", "step", "metric", "value"]
    assert rows_table.to_pylist()[1] == dict(zip(rows_table.column_names, points[1], strict=True))


def test_curves_of_a_run_with_several_batches_an_epoch(tmp_path):
    """Written with the project's own logger as Lightning calls it: 3 batches an epoch,
    then a resumed run logging epoch 2 again and its own best; a last record cut short by a
    kill."""
    n, run = 3, tmp_path / "run"
    logger = StageLogger(str(run))
    for epoch in range(4):
        logger.log_metrics({"train/loss": 1 / (epoch + 1), "epoch": epoch}, (epoch + 1) * n - 1)
        if epoch % 2 == 1:
            logger.log_metrics({"val/acc": epoch / 10}, (epoch + 1) * n - 1)
    logger.log_metrics({"best/acc": 0.1}, 2 * n - 1)  # the best when it stopped
    logger.finalize("success")
    again = StageLogger(str(run))  # the resumed run: epoch 2 anew, then the test
    again.log_metrics({"train/loss": 0.25}, 3 * n - 1)
    again.log_metrics({"best/acc": 0.3}, 4 * n - 1)  # replaces the one before
    again.log_metrics({"test/acc": 0.9}, 4 * n)
    again.finalize("success")
    [cut] = sorted((run / "val").glob("events.*"))[-1:]
    cut.write_bytes(cut.read_bytes() + b"\x40\x00\x00\x00\x00\x00\x00\x00\x01\x02\x03")
    stage, epoch, step, metric, value = tables.read_curves(run)
    got = list(zip(stage, epoch, step, metric, value, strict=True))
    assert got == [
        ("best", 3, 11, "acc", pytest.approx(0.3)),  # one best: the resumed run's
        ("test", 3, 12, "acc", pytest.approx(0.9)),  # tested after the last epoch, 3
        ("train", 0, 2, "loss", 1.0),
        ("train", 1, 5, "loss", 0.5),
        ("train", 2, 8, "loss", 0.25),  # the resumed run's value
        ("train", 3, 11, "loss", 0.25),
        ("val", 1, 5, "acc", pytest.approx(0.1)),
        ("val", 3, 11, "acc", pytest.approx(0.3)),
    ]


def test_pyarrow_is_not_imported_when_xor_train_starts():
    code = "import sys, xor_lightning.train, xor_lightning.sweeps.summary, "
    code += "xor_lightning.sweeps.tables; "
    code += "sys.exit('pyarrow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def check_tables(sweep_dir: Path, n_jobs: int, tensorboard: bool = True) -> None:
    """results.parquet against each job's job.json/metrics.json; curves.parquet against
    what TensorBoard reads in each job's dir."""
    results = pq.read_table(sweep_dir / "results.parquet").to_pylist()
    assert [r["job"] for r in results] == list(range(n_jobs))
    for r in results:
        job_dir = sweep_dir / str(r["job"])
        record = json.loads((job_dir / "job.json").read_text())
        assert (r["status"], r["error"], r["wall_s"]) == (
            record["status"], record["error"], record["wall_s"])  # fmt: skip
        for override in record["overrides"]:  # typed as Hydra reads them
            assert r[override.partition("=")[0]] == hydra_reads(override), override
        metrics_file = job_dir / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
        for name in tables.METRICS:
            expected = metrics.get(name)
            assert r[name] == expected or (math.isnan(r[name]) and math.isnan(expected))
        best = sorted(job_dir.glob("checkpoints/best-epoch*.ckpt"))
        assert r["best_epoch"] == (int(best[-1].stem[10:13]) if best else None)
    points = pq.read_table(sweep_dir / "curves.parquet").to_pylist()
    for r in results:
        seen = curves(sweep_dir / str(r["job"])) if tensorboard else {}
        expected = {(run, tag, step): v for run, tags in seen.items()
                    for tag, series in tags.items() for step, v in series}  # fmt: skip
        got = {(p["stage"], p["metric"], p["step"]): p["value"]
               for p in points if p["job"] == r["job"]}  # fmt: skip
        assert got == pytest.approx(expected)
        assert bool(got) == (tensorboard and r["status"] != "failed")


@pytest.mark.slow
def test_a_sweep_on_the_users_own_data_writes_both_tables(tmp_path):
    points = write_points(tmp_path / "points.csv", n=200, seed=3)
    d = tmp_path / "sweep"
    proc = cli("train", "-m", "model.hidden=0,3", "model.optimizer.lr=1,0.05", "debug=quick",
               "data=csv", f"data.path={points}", "data.batch_size=16",
               "model.steps_per_call=2", f"hydra.sweep.dir={d}", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_tables(d, 4)
    results = pq.read_table(d / "results.parquet")
    assert str(results.schema.field("model.optimizer.lr").type) == "double"
    assert str(results.schema.field("model.hidden").type) == "int64"
    # 120 training points, batches of 16, 2 a chunk: 4 logging steps an epoch
    long = pq.read_table(d / "curves.parquet").to_pandas()
    for job, best_epoch in zip(results["job"].to_pylist(), results["best_epoch"].to_pylist(),
                               strict=True):  # fmt: skip
        mine = long[long.job == job]
        if best_epoch is None:
            assert mine.empty
            continue
        train = mine[(mine.stage == "train") & (mine.metric == "loss")]
        assert train.epoch.tolist() == list(range(20))
        assert train.step.tolist() == [4 * (e + 1) - 1 for e in range(20)]
        assert sorted(set(mine[mine.stage == "val"].epoch)) == [4, 9, 14, 19]  # every 5th
        assert set(mine[mine.stage == "best"].epoch) == {best_epoch}
        assert set(mine[mine.stage == "test"].epoch) == {19}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local", "vectorized"])
def test_every_launcher_writes_them(launcher, tmp_path):
    d = tmp_path / launcher
    proc = cli("train", "-m", "seed=0,1", "model.hidden=2,8", "debug=quick",
               f"hydra/launcher={launcher}", f"hydra.sweep.dir={d}", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_tables(d, 4)


@pytest.mark.slow
def test_an_optuna_search_without_tensorboard_has_rows_and_no_curves(tmp_path):
    d = tmp_path / "opt"
    proc = cli("train", "hparams_search=xor_optuna", "hydra.sweeper.n_trials=3", "debug=quick",
               "logger=none", f"hydra.sweep.dir={d}", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_tables(d, 3, tensorboard=False)
    empty = pq.read_table(d / "curves.parquet")
    assert empty.num_rows == 0 and empty.column_names == list(tables.CURVE_COLUMNS)
    schema = pq.read_schema(d / "results.parquet")
    assert {"model.optimizer.lr", "model.hidden", "model.activation"} <= set(schema.names)
    assert str(schema.field("model.optimizer.lr").type) == "double"


@pytest.mark.slow
def test_the_docs_one_liners_read_the_tables(tmp_path, monkeypatch):
    """docs/sweeps.md's pandas, polars and DuckDB lines, run in a sweep's dir, against
    each job's own metrics.json."""
    d = tmp_path / "s"
    proc = cli("train", "-m", "model.hidden=2,8", "seed=0,1", "debug=quick",
               "hydra/launcher=vectorized", f"hydra.sweep.dir={d}", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = [json.loads((d / str(j) / "job.json").read_text()) for j in range(4)]
    acc = {j: json.loads((d / str(j) / "metrics.json").read_text())["val/acc"] for j in range(4)}
    swept = [dict(o.split("=") for o in r["overrides"]) for r in jobs]
    hidden = {j: int(s["model.hidden"]) for j, s in enumerate(swept)}
    mean = {h: sum(acc[j] for j in acc if hidden[j] == h) / 2 for h in (2, 8)}
    tb = {j: curves(d / str(j))["val"]["acc"] for j in range(4)}
    peak = {j: max(v for _, v in series) for j, series in tb.items()}

    monkeypatch.chdir(d)
    block = ast.parse("\n".join(doc_block("docs/sweeps.md", "**One table per sweep.**")))
    imports, *lines = block.body
    namespace: dict = {}
    exec(compile(ast.Module([imports], []), "docs", "exec"), namespace)
    by_pandas, by_polars, by_duckdb = (
        eval(compile(ast.Expression(line.value), "docs", "eval"), namespace) for line in lines
    )
    assert by_pandas.to_dict() == pytest.approx(mean)
    assert dict(by_polars.sort("job").iter_rows()) == pytest.approx(peak)
    assert dict(by_duckdb.fetchall()) == pytest.approx(mean)
    text = " ".join((REPO / "docs" / "sweeps.md").read_text().split())
    [query] = re.findall(r'df\.query\("([^"]+)"\)', text)  # a name with / in a query
    df = pd.read_parquet("results.parquet")
    assert len(df.query(query)) == sum(v > 0.9 for v in acc.values())


def test_the_sweep_callback_writes_them_and_a_failure_is_one_line(tmp_path, caplog):
    from omegaconf import OmegaConf

    from xor_lightning.files import write_json
    from xor_lightning.sweeps.summary import SweepSummary

    for job, hidden in enumerate((2, 8)):
        job_dir = tmp_path / str(job)
        job_dir.mkdir()
        write_json(job_dir / "job.json", row(job, [f"model.hidden={hidden}"], wall_s=0.1))
        write_json(job_dir / "metrics.json", {"val/acc": hidden / 10, "best_epoch": 0})
        logger = StageLogger(str(job_dir))
        logger.log_metrics({"val/acc": hidden / 10}, 0)
        logger.finalize("success")
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    SweepSummary().on_multirun_end(config)
    got = pq.read_table(tmp_path / "results.parquet").to_pydict()
    assert (got["model.hidden"], got["val/acc"]) == ([2, 8], [0.2, 0.8])
    assert pq.read_table(tmp_path / "curves.parquet").to_pydict()["value"] == pytest.approx(
        [0.2, 0.8]
    )
    (tmp_path / "curves.parquet").unlink()
    (tmp_path / "curves.parquet" / "x").mkdir(parents=True)  # cannot be replaced
    SweepSummary().on_multirun_end(config)
    [error] = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert error.startswith("the sweep's tables were not written: ") and "\n" not in error
    assert (tmp_path / "summary.csv").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no .tmp


def test_a_table_that_cannot_be_written_leaves_nothing_behind(tmp_path):
    """Neither half a table nor the temporary file it was written to: the file is what it
    was before (here: a dir in its place, which a rename cannot replace)."""
    (tmp_path / "results.parquet" / "x").mkdir(parents=True)
    with pytest.raises(OSError):
        tables.write(tmp_path, [{"job": 0, "status": "ok", "overrides": []}], [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.parquet"]


def test_the_docs_name_every_status_a_job_can_have():
    """`docs/sweeps.md` lists what a job's `job.json` (and so the tables' `status`) can
    hold: `ok`, `pruned` and `failed` from any launcher (`sweep_job.py`), `interrupted` when
    Ctrl-C or SIGTERM stopped it, and `running` from the vectorised launcher while the job
    trains (`xor_vectorized/outputs.py`, `xor_vectorized/compact.py`)."""
    text = " ".join((REPO / "docs" / "sweeps.md").read_text().split())
    [listed] = re.findall(r"`status` \(([^)]*)\)", text)
    assert set(re.findall(r"`(\w+)`", listed)) == {"ok", "pruned", "failed", "interrupted",
                                                     "running"}  # fmt: skip
