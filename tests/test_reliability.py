"""Bad input refused up front; interruptions lose nothing; divergence stops cleanly."""

import re
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import cli, compose_app, compose_train, load, wait_for
from xor_lightning.errors import UserError
from xor_lightning.tools.evaluate import evaluate
from xor_lightning.train import build, train
from xor_lightning.train_metrics import NonFiniteLossError
from xor_lightning.validate import validate_train

INVALID = [
    ("model.hidden=0", "model.hidden=0"),
    ("model.hidden=abc", "model.hidden='abc'"),
    ("model=deep_mlp model.depth=0", "model.depth=0"),
    ("model.steps_per_call=0", "model.steps_per_call=0"),
    ("task=multiclass task.num_classes=1", "task.num_classes=1"),
    ("data.problem=square", "data.problem='square'"),
    ("model.optimizer.lr=0", "model.optimizer.lr=0"),
    ("model.optimizer.lr=-0.1", "model.optimizer.lr=-0.1"),
    ("data.n_samples=0", "data.n_samples=0"),
    ("data.batch_size=0", "data.batch_size=0"),
    ("data.noise=-0.1", "data.noise=-0.1"),
    ("data.noise=1.5", "data.noise=1.5"),
    ("data.aspect=-0.5", "data.aspect=-0.5"),
    ("trainer.max_epochs=0", "trainer.max_epochs=0"),
    ("trainer.max_epochs=-2", "trainer.max_epochs=-2"),
    ("trainer.accelerator=tpu", "trainer.accelerator='tpu'"),
    ("model.activation=swish", "model.activation='swish'"),
    ("seed=1.5", "seed=1.5"),
    ("seed=true", "seed=True"),
    ("seed=-1", "seed=-1"),
    ("+model.hiden=4", "unknown key model.hiden"),
    ("+data.nosie=0.1", "unknown key data.nosie"),
    ("+trainer.max_epoch=3", "unknown key trainer.max_epoch"),
]


def cli_train(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return cli("train", *args, cwd=cwd)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(("override", "named"), INVALID, ids=[o for o, _ in INVALID])
def test_invalid_value_is_refused_naming_key_and_value(make_cfg, override, named):
    with pytest.raises(UserError, match=rf"^{re.escape(named)}[^\n]*$"):
        train(make_cfg(*override.split()))


def test_the_one_pass_refuses_what_train_would_refuse_after_it(make_cfg, tmp_path):
    """`validate_train` is the whole check: a checkpoint to start from that is not there,
    and a GPU the machine lacks, are refused by it, not later by `train`."""
    with pytest.raises(UserError, match=r"^checkpoint not found: .*nope\.ckpt"):
        validate_train(make_cfg(f"ckpt_path={tmp_path / 'nope.ckpt'}"))
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match=r"^trainer\.accelerator=gpu but no GPU was found"):
            validate_train(make_cfg("trainer.accelerator=gpu"))


def test_valid_edge_values_pass(make_cfg):
    for override in ["trainer.max_epochs=-1", "data.noise=1", "data.batch_size=null", "seed=0",
                     "data.aspect=0"]:  # fmt: skip
        validate_train(make_cfg(override))


@pytest.mark.slow
@pytest.mark.parametrize("override", ["model.hidden=0", "+model.hiden=4"])
def test_cli_refuses_before_anything_is_made(tmp_path, override):
    proc = cli_train(override, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "outputs" / "runs").exists() or not any(
        (tmp_path / "outputs" / "runs").iterdir()
    )


def test_evaluate_refuses_bad_data_overrides(trained_ckpt, tmp_path):
    for override, named in [("data.noise=3", "data.noise=3"), ("data.n_test=0", "data.n_test=0")]:
        cfg = compose_app(
            "evaluate", f"ckpt_path={trained_ckpt}", f"paths.output_dir={tmp_path}", override
        )
        with pytest.raises(UserError, match=named):
            evaluate(cfg)
    assert not (tmp_path / "metrics.json").exists()


VALID = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "model.hidden": st.integers(1, 32),
        "model.activation": st.sampled_from(["tanh", "relu", "sigmoid", "gelu"]),
        "model.optimizer.lr": st.floats(1e-5, 1.0),
        "data.n_samples": st.integers(1, 300),
        "data.noise": st.floats(0.0, 1.0),
        "data.batch_size": st.none() | st.integers(1, 400),
        "model.steps_per_call": st.integers(1, 8),
    }
)


@pytest.mark.slow
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(params=VALID)
def test_any_valid_config_trains_a_step(tmp_path, params):
    overrides = [f"{k}={'null' if v is None else v}" for k, v in params.items()]
    cfg = compose_train(
        f"paths.output_dir={tmp_path}", "debug=fast_dev_run", "logger=none", *overrides
    )
    validate_train(cfg)
    trainer, module, datamodule = build(cfg)
    trainer.fit(module, datamodule=datamodule)
    # fast_dev_run: one training_step, of one mini-batch or one chunk of them
    assert 1 <= trainer.global_step <= params["model.steps_per_call"]


BAD_VALUES = {
    "model.hidden": st.integers(max_value=0) | st.floats(0.5, 50) | st.text(min_size=1, max_size=5),
    "model.optimizer.lr": st.floats(max_value=0.0) | st.just("fast"),
    "data.n_samples": st.integers(max_value=0) | st.floats(1.5, 100),
    "data.noise": st.floats(min_value=1.001, max_value=1e6)
    | st.floats(max_value=-1e-6, min_value=-1e6),
    "data.batch_size": st.integers(max_value=0),
    "trainer.max_epochs": st.integers(max_value=-2) | st.just(0),
    "trainer.accelerator": st.sampled_from(["tpu", "GPUs", "ipu", "hpu"]),
    "model.activation": st.sampled_from(["swish", "Tanh", "elu", "softmax"]),
    "seed": st.floats(0.5, 100.5).filter(lambda v: v != int(v)) | st.integers(max_value=-1),
}


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_any_invalid_value_is_refused_with_a_clear_message(data):
    key = data.draw(st.sampled_from(sorted(BAD_VALUES)))
    value = data.draw(BAD_VALUES[key])
    text = repr(value) if isinstance(value, str) else str(value)
    cfg = compose_train("paths.output_dir=/nonexistent", f"{key}={text}")
    with pytest.raises(UserError, match=rf"^{re.escape(key)}=[^\n]* is not allowed: use [^\n]*$"):
        validate_train(cfg)


# ---------------------------------------------------------------- divergence


class CorruptWeights(L.Callback):
    """Simulates divergence: the weights become NaN at the start of epoch 12."""

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 12:
            with torch.no_grad():
                pl_module.net.fc1.weight.fill_(float("nan"))


def test_non_finite_loss_stops_and_keeps_the_good_checkpoints(make_cfg, tmp_path):
    trainer, module, datamodule = build(make_cfg("debug=quick"))
    trainer.callbacks.append(CorruptWeights())
    with pytest.raises(NonFiniteLossError, match=r"became nan at epoch 12, optimizer step 13") as e:
        trainer.fit(module, datamodule=datamodule)
    best_name = next((tmp_path / "checkpoints").glob("best-*.ckpt")).name
    assert f"{best_name}, last.ckpt hold the last state saved before it" in str(e.value)
    last = load(tmp_path / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 10  # saved after epoch 9, never overwritten after
    best = load(next((tmp_path / "checkpoints").glob("best-*.ckpt")))
    for ckpt in (last, best):
        assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())


@pytest.mark.slow
def test_divergence_from_the_cli_is_one_clean_line(tmp_path):
    proc = cli_train(
        "debug=quick",
        "model.optimizer._target_=torch.optim.SGD",
        "~model.optimizer.fused",
        "model.optimizer.lr=1e38",
        f"hydra.run.dir={tmp_path}/run",
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "error: the loss became" in proc.stderr and "Traceback" not in proc.stderr
    # It diverged in the first epoch, before any checkpoint: the message says so, and the
    # run dir stays with its log, also without a logger's files beside it.
    assert "no checkpoint was saved before it" in proc.stderr
    proc = cli_train(
        "debug=quick", "logger=none", "model.optimizer._target_=torch.optim.SGD",
        "~model.optimizer.fused", "model.optimizer.lr=1e38", f"hydra.run.dir={tmp_path}/bare",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2 and "error: the loss became" in proc.stderr
    assert "the loss became" in (tmp_path / "bare" / "train.log").read_text()


# ---------------------------------------------------------------- interruptions


class Crash(L.Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 15:
            raise RuntimeError("simulated crash")


@pytest.mark.parametrize(
    "schedule",
    [
        pytest.param(["scheduler=none"], id="constant"),
        pytest.param(
            ["scheduler=cosine", "scheduler.warmup_epochs=3"], id="cosine", marks=pytest.mark.slow
        ),
        # validations after epochs 4, 9, 14, 19; the crash comes after the third
        pytest.param(
            ["scheduler=plateau", "scheduler.patience=0", "+scheduler.threshold=0.9"],
            id="plateau",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_resume_from_a_mid_run_last_ckpt_is_exact(make_cfg, tmp_path, schedule):
    common = ("debug=quick", "data.n_samples=64", "data.batch_size=16",
              "callbacks.last_checkpoint.every_n_epochs=7",
              "logger=none", "callbacks.boundary_plot=null", *schedule)  # fmt: skip
    train(make_cfg(*common, out=tmp_path / "ref"))
    trainer, module, datamodule = build(make_cfg(*common, out=tmp_path / "run"))
    trainer.callbacks.append(Crash())
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer.fit(module, datamodule=datamodule)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert load(last)["global_step"] == 14 * 4  # epochs 0..13, 4 mini-batches each
    train(make_cfg(*common, f"ckpt_path={last}", out=tmp_path / "run"))
    a, b = load(tmp_path / "ref" / "checkpoints" / "last.ckpt"), load(last)
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"]) == (20, 80)
    for k, v in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][k], v, atol=1e-5, rtol=0)
    assert a["lr_schedulers"] == b["lr_schedulers"]
    if "scheduler=none" not in schedule:  # the schedule really changed the rate
        assert a["lr_schedulers"][0]["_last_lr"][0] < 0.05 / 2


LONG = ("data.n_samples=64", "data.batch_size=16", "trainer.max_epochs=400", "logger=none")


def start(run_dir: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "xor_lightning.train", *LONG, f"hydra.run.dir={run_dir}", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("reference")
    train(compose_train(f"paths.output_dir={out}", *LONG))
    return load(out / "checkpoints" / "last.ckpt")


def assert_same_end(ckpt: dict, ref: dict) -> None:
    assert (ckpt["epoch"], ckpt["global_step"]) == (ref["epoch"], ref["global_step"])
    for k, v in ref["state_dict"].items():
        torch.testing.assert_close(ckpt["state_dict"][k], v, atol=1e-5, rtol=0)


# xor-train whose second write of last.ckpt's content stops halfway: SIGKILL mid-write.
DIES_WRITING = """
import io, os, signal, sys, torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
save, last_writes = TorchCheckpointIO.save_checkpoint, []
def dying_save(self, checkpoint, path, storage_options=None):
    if "last" in os.path.basename(path) and len(last_writes) == 1:
        data = io.BytesIO()
        torch.save(checkpoint, data)
        with open(path, "wb") as f:
            f.write(data.getvalue()[: len(data.getvalue()) // 2])
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    if "last" in os.path.basename(path):
        last_writes.append(path)
    return save(self, checkpoint, path, storage_options)
TorchCheckpointIO.save_checkpoint = dying_save
from xor_lightning.train import main
main()
"""


@pytest.mark.slow
def test_sigkill_inside_a_write_of_last_ckpt_then_resume_ends_like_the_run_left_alone(
    tmp_path, reference
):
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    cmd = [sys.executable, "-c", DIES_WRITING, *LONG, f"hydra.run.dir={run_dir}"]
    killed = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (run_dir / "checkpoints" / ".last.ckpt.tmp").stat().st_size > 0  # died in there
    assert load(last)["global_step"] == 10 * 4  # the first refresh, whole
    # `resume=` goes on, though the killed process's lock file is still there
    done = cli("train", f"resume={run_dir}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert_same_end(load(last), reference)
    assert not list(run_dir.glob("checkpoints/.*.tmp"))


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_save_a_checkpoint_that_resumes(tmp_path, reference, sig):
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    proc = start(run_dir)
    wait_for(last, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig
    assert "Resume with: xor-train resume=" in out and "Traceback" not in err
    stopped = load(last)
    assert 0 < stopped["global_step"] < reference["global_step"]
    assert stopped["global_step"] % 4 == 0  # an epoch boundary: 4 mini-batches per epoch
    done = subprocess.run(
        [sys.executable, "-m", "xor_lightning.train", f"resume={run_dir}"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert_same_end(load(last), reference)
    assert not (tmp_path / "outputs").exists()  # continued in place, no new run dir
    assert (run_dir / "metrics.json").exists()


def test_a_second_ctrl_c_aborts_at_once():
    from xor_lightning.callbacks import GracefulStop

    stop = GracefulStop()
    stop._handle(signal.SIGINT, None)  # the first: finish the epoch, then stop
    assert stop.signal == signal.SIGINT
    with pytest.raises(KeyboardInterrupt):
        stop._handle(signal.SIGINT, None)


def test_a_refusal_is_one_line_unless_hydra_full_error_asks_for_the_traceback(monkeypatch, capsys):
    from xor_lightning.config import run_app

    def refuse(cfg):
        raise UserError("data.noise=2 is not allowed")

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as exit_:
        run_app(refuse, None)
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "error: data.noise=2 is not allowed\n"
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(UserError, match=r"^data\.noise=2 is not allowed$"):
        run_app(refuse, None)


class OtherRankDiverges(L.Callback):
    """From epoch 3 on, the DDP vote says some other rank's loss is not finite."""

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 3:
            trainer.strategy.reduce_boolean_decision = lambda decision, all=True: True


def test_a_non_finite_loss_on_another_rank_stops_this_one_too(make_cfg, tmp_path):
    trainer, module, datamodule = build(make_cfg("debug=quick", "logger=none"))
    trainer.callbacks.append(OtherRankDiverges())
    with pytest.raises(NonFiniteLossError, match=r"^the loss became non-finite on another DDP "
                       r"rank at epoch 3: training stopped"):  # fmt: skip
        trainer.fit(module, datamodule=datamodule)
    assert trainer.global_step == 4  # this rank's own loss was finite all along
