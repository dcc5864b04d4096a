"""The vectorised launcher keeps its word in every corner (reruns, locks, cut-short records,
Hydra's job callbacks, the summary's order, Optuna's generated study names, its settings)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import cli, load
from tests.test_lock import HOLD
from tests.test_vectorized import VEC, summary, sweep

TINY = ("trainer.max_epochs=4", "trainer.check_val_every_n_epoch=2", "callbacks=none")


def overrides_of(job_dir: Path) -> list[str]:
    return json.loads((job_dir / "job.json").read_text())["overrides"]


@pytest.mark.slow
def test_a_rerun_keeps_only_the_same_jobs_and_survives_a_record_cut_short(tmp_path):
    d = tmp_path / "s"
    sweep("seed=1,2", *TINY, f"hydra.sweep.dir={d}", cwd=tmp_path)
    first = {j: (d / j / "metrics.json").read_text() for j in ("0", "1")}
    # a kill while job 0's record was being written: half of it
    record = (d / "0" / "job.json").read_text()
    (d / "0" / "job.json").write_text(record[: len(record) // 2])
    proc = sweep("seed=1,2", *TINY, f"hydra.sweep.dir={d}", cwd=tmp_path)
    log = proc.stdout + proc.stderr
    assert "1 job(s) finished in an earlier launch of this sweep: kept" in log
    assert "job 0: its job.json is unreadable" in log
    assert json.loads((d / "0" / "job.json").read_text())["status"] == "ok"  # trained again
    assert (d / "1" / "metrics.json").read_text() == first["1"]
    # other overrides into the same dir: nothing kept, each job is its own
    proc = sweep("seed=3,4", *TINY, f"hydra.sweep.dir={d}", cwd=tmp_path)
    assert "kept" not in proc.stdout + proc.stderr
    for job, seed in (("0", 3), ("1", 4)):
        assert f"seed={seed}" in overrides_of(d / job)
        assert load(d / job / "checkpoints" / "last.ckpt")["run_config"]["seed"] == seed
        assert (d / job / "metrics.json").read_text() != first[job]
    rows = summary(d)
    seeds = sorted(o for r in rows.values() for o in r["overrides"].split() if "seed" in o)
    assert seeds == ["seed=3", "seed=4"]


@pytest.mark.slow
def test_a_job_dir_in_use_is_left_untouched_and_run_by_a_later_rerun(tmp_path):
    d = tmp_path / "s"
    mine = d / "1" / ".hydra" / "config.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text("theirs: true\n")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(d / "1")], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        holder.stdout.readline()  # it holds the lock now
        proc = sweep("seed=1,2", *TINY, f"hydra.sweep.dir={d}", cwd=tmp_path)
        assert f"job 1 not run: {d / '1'} is in use by another run (pid {holder.pid})" in (
            proc.stdout + proc.stderr
        )
        assert mine.read_text() == "theirs: true\n" and not (d / "1" / "job.json").exists()
    finally:
        holder.kill()
        holder.wait()
    proc = sweep("seed=1,2", *TINY, f"hydra.sweep.dir={d}", cwd=tmp_path)
    assert "1 job(s) finished in an earlier launch of this sweep: kept" in proc.stdout + proc.stderr
    assert json.loads((d / "1" / "job.json").read_text())["status"] == "ok"


@pytest.mark.slow
def test_each_job_keeps_its_own_checkpoint_state_and_one_best(tmp_path):
    """Job 1 diverges before its first validation: it has no best of its own, whatever job
    0 (written just before it, by the same Trainer) had. Saves every 5 epochs leave one best."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    d = tmp_path / "s"
    sweep("model.optimizer.lr=0.05,1e38", "trainer.max_epochs=30",
          "trainer.check_val_every_n_epoch=3", "hydra.launcher.last_every_n_epochs=5",
          f"hydra.sweep.dir={d}", cwd=tmp_path)  # fmt: skip
    fresh = ModelCheckpoint(monitor="val/acc", mode="max").state_dict()
    states = {}
    for job in ("0", "1"):
        last = load(d / job / "checkpoints" / "last.ckpt")
        states[job] = next(v for k, v in last["callbacks"].items() if k.startswith("ModelCh"))
    assert json.loads((d / "1" / "job.json").read_text())["status"] == "failed"
    for key in ("best_model_path", "best_model_score", "best_k_models", "kth_best_model_path"):
        assert states["1"][key] == fresh[key], key
    assert states["1"]["kth_value"] == fresh["kth_value"]
    bests = sorted(p.name for p in (d / "0" / "checkpoints").glob("*.ckpt"))
    assert bests == sorted(["last.ckpt", Path(states["0"]["best_model_path"]).name])
    assert sorted(p.name for p in (d / "1" / "checkpoints").glob("*.ckpt")) == ["last.ckpt"]


RECORDER = """
import json
from hydra.experimental.callback import Callback

class Recorder(Callback):
    def on_job_start(self, config, **kwargs):
        self.write({"event": "start", "num": config.hydra.job.num, "seed": config.seed,
                    "dir": config.hydra.runtime.output_dir})

    def on_job_end(self, config, job_return, **kwargs):
        self.write({"event": "end", "num": job_return.hydra_cfg.hydra.job.num,
                    "seed": job_return.cfg.seed, "status": job_return.status.name,
                    "overrides": list(job_return.overrides), "value": job_return.return_value})

    def write(self, event):
        with open("events.jsonl", "a") as f:
            f.write(json.dumps(event) + "\\n")
"""


@pytest.mark.slow
def test_hydra_job_callbacks_fire_as_under_the_basic_launcher(tmp_path):
    """A tracking callback of the user's own sees every stacked job, with complete returns;
    and a minimised metric's summary puts the lowest first."""
    events = {}
    for launcher in ("basic", "vectorized"):
        cwd = tmp_path / launcher
        cwd.mkdir()
        (cwd / "recorder.py").write_text(RECORDER)
        proc = cli("train", "-m", f"hydra/launcher={launcher}", "logger=none", "seed=1,2",
                   "model.optimizer.lr=0.002,0.05", "optimized_metric=val/loss", *TINY,
                   "+hydra.callbacks.recorder._target_=recorder.Recorder",
                   f"hydra.sweep.dir={cwd / 's'}", cwd=cwd)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        lines = (cwd / "events.jsonl").read_text().splitlines()
        events[launcher] = sorted(map(json.loads, lines), key=lambda e: (e["num"], e["event"]))
        rows = list(summary(cwd / "s").values())
        losses = [float(r["val/loss"]) for r in rows]
        assert losses == sorted(losses) and len(losses) == 4  # best (lowest) first
    basic, stacked = events["basic"], events["vectorized"]
    assert [(e["num"], e["event"], e["seed"]) for e in stacked] == [
        (e["num"], e["event"], e["seed"]) for e in basic
    ]
    for b, s in zip(basic, stacked, strict=True):
        if b["event"] == "end":
            assert s["status"] == b["status"] == "COMPLETED"
            assert s["overrides"] == b["overrides"]
            assert s["value"] == pytest.approx(b["value"], abs=0.01)
        else:
            assert Path(s["dir"]).name == Path(b["dir"]).name


@pytest.mark.slow
def test_optuna_with_a_pruner_and_a_generated_study_name(tmp_path):
    d = tmp_path / "s"
    proc = cli("train", "hparams_search=xor_optuna", VEC, "hydra.sweeper.study_name=null",
               "hydra/sweeper/pruner=median", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
               "logger=none", *TINY, f"hydra.sweep.dir={d}", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    results = yaml.safe_load((d / "optimization_results.yaml").read_text())
    assert results["n_trials"] == 2 and results["n_failed"] == 0


def test_the_same_job_is_the_same_overrides_and_the_same_config(tmp_path):
    """What a rerun keeps: a record with the job's overrides and its config's digest; the
    same overrides with a config edited since (another digest) are another job; a record
    from before digests is compared with the `.hydra/config.yaml` beside it."""
    from xor_lightning.files import digest
    from xor_vectorized.reruns import same_job
    from xor_vectorized.run import Job

    job = Job(0, ["seed=1"], tmp_path / "0", digest=digest({"seed": 1, "model": {"hidden": 8}}))
    assert same_job({"overrides": ["seed=1"], "config": job.digest}, job)
    assert not same_job({"overrides": ["seed=2"], "config": job.digest}, job)
    edited = digest({"seed": 1, "model": {"hidden": 4}})  # the model's file edited since
    assert not same_job({"overrides": ["seed=1"], "config": edited}, job)
    saved = tmp_path / "0" / ".hydra" / "config.yaml"
    saved.parent.mkdir(parents=True)
    saved.write_text("seed: 1\nmodel:\n  hidden: 8\n")
    assert same_job({"overrides": ["seed=1"]}, job)
    saved.write_text("seed: 1\nmodel:\n  hidden: 4\n")
    assert not same_job({"overrides": ["seed=1"]}, job)


BAD_SETTINGS = {
    "max_models_per_fit": (0, "an integer >= 1"),
    "job_dirs_up_to": (-1, "an integer >= 0"),
    "curve_every_n_epochs": (0, "an integer >= 1"),
    "workers": (-1, "an integer >= 1 or null (one per core)"),
    "last_every_n_epochs": (-5, "an integer >= 0"),
    "pictures_up_to": (-1, "an integer >= 0"),
}


@pytest.mark.parametrize("name", BAD_SETTINGS)
def test_a_setting_out_of_its_range_is_refused_when_the_launcher_is_made(name, capsys):
    """Each of the launcher's settings is checked when Hydra builds the launcher (before the
    sweeper writes anything): one line naming it and what it may be, exit 2."""
    from hydra_plugins.xor_vectorized_launcher.config import VectorizedLauncherConf
    from hydra_plugins.xor_vectorized_launcher.launcher import VectorizedLauncher

    settings = {k: v for k, v in vars(VectorizedLauncherConf()).items() if k != "_target_"}
    VectorizedLauncher(**settings)  # the defaults are taken
    value, allowed = BAD_SETTINGS[name]
    with pytest.raises(SystemExit) as exit_:
        VectorizedLauncher(**{**settings, name: value})
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        f"error: hydra.launcher.{name}={value} is not allowed: use {allowed}\n"
    )


@pytest.mark.slow
def test_a_bad_setting_stops_the_sweep_before_any_job_dir(tmp_path):
    for setting in ("max_models_per_fit=0", "job_dirs_up_to=-1"):
        d = tmp_path / setting.split("=")[0]
        proc = cli("train", "-m", VEC, "logger=none", "seed=1,2", *TINY,
                   f"hydra.launcher.{setting}", f"hydra.sweep.dir={d}", cwd=tmp_path)  # fmt: skip
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert proc.stderr.strip().splitlines() == [
            f"error: hydra.launcher.{setting} is not allowed: use an integer >= "
            f"{1 if 'max' in setting else 0}"
        ]
        assert [p.name for p in d.iterdir()] == [".lock"]  # the sweep dir's lock: nothing else
