import math

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from xor_lightning.datamodule import XORDataModule
from xor_lightning.deep_mlp import DeepMLP
from xor_lightning.model import MLP
from xor_lightning.module import XORModule

NET = {"_target_": "xor_lightning.model.MLP", "hidden": 8}
OPTIMIZER = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.05}


def test_mlp_has_33_parameters_and_returns_one_logit_per_point():
    net = MLP()
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == 33
    out = net(torch.zeros(5, 2))
    assert out.shape == (5, 1)


def test_mlp_outputs_logits_not_probabilities():
    torch.manual_seed(0)
    net = MLP(hidden=4)
    with torch.no_grad():
        net.fc2.weight.fill_(10.0)
        net.fc2.bias.fill_(-50.0)
    out = net(torch.randn(100, 2))
    assert (out < 0).all() and (out < -1).any()  # a probability would lie in [0, 1]


def test_mlp_hidden_and_activation():
    assert sum(p.numel() for p in MLP(hidden=4).parameters()) == 2 * 4 + 4 + 4 + 1
    assert isinstance(MLP(activation="relu").act, torch.nn.ReLU)
    deep = DeepMLP(hidden=4, depth=3)
    assert sum(p.numel() for p in deep.parameters()) == (2 * 4 + 4) + 2 * (4 * 4 + 4) + (4 + 1)
    assert deep(torch.zeros(3, 2)).shape == (3, 1)


class ModeProbe(L.Callback):
    """Records, per stage, whether the module was in train mode and grad was enabled."""

    def __init__(self) -> None:
        self.seen: dict[str, set[tuple[bool, bool]]] = {}

    def _record(self, stage, pl_module):
        self.seen.setdefault(stage, set()).add((pl_module.training, torch.is_grad_enabled()))

    def on_train_batch_start(self, trainer, pl_module, *args):
        self._record("train", pl_module)

    def on_validation_batch_start(self, trainer, pl_module, *args):
        self._record("val", pl_module)

    def on_test_batch_start(self, trainer, pl_module, *args):
        self._record("test", pl_module)

    def on_predict_batch_start(self, trainer, pl_module, *args):
        self._record("predict", pl_module)


def test_lightning_does_eval_and_no_grad_around_validation_test_and_predict():
    module = XORModule(NET, OPTIMIZER)
    dm = XORDataModule(n_samples=32, n_val=16, n_test=16)
    probe = ModeProbe()
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, callbacks=[probe],
                        enable_checkpointing=False, enable_progress_bar=False)  # fmt: skip
    trainer.fit(module, datamodule=dm)
    trainer.test(module, datamodule=dm, verbose=False)
    trainer.predict(module, datamodule=dm)
    assert probe.seen == {
        "train": {(True, True)},
        "val": {(False, False)},
        "test": {(False, False)},
        "predict": {(False, False)},
    }


def test_predict_gives_the_sigmoid_of_the_logits():
    # One tanh unit, weights set by hand: P(label 1) = sigmoid(2 tanh(3 x1 - x2) - 0.5).
    module = XORModule({**NET, "hidden": 1})
    with torch.no_grad():
        module.net.fc1.weight.copy_(torch.tensor([[3.0, -1.0]]))
        module.net.fc1.bias.zero_()
        module.net.fc2.weight.fill_(2.0)
        module.net.fc2.bias.fill_(-0.5)
    x = torch.tensor([[0.5, 0.2], [-0.3, 0.9], [0.0, 0.0]])
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    [probs] = trainer.predict(module, DataLoader([x], batch_size=None))
    expected = [1 / (1 + math.exp(-(2 * math.tanh(3 * a - b) - 0.5))) for a, b in x.tolist()]
    assert probs.squeeze(1).tolist() == pytest.approx(expected, abs=1e-6)


def test_mlp_is_the_chapters_class_fc1_tanh_fc2():
    torch.manual_seed(0)
    net = MLP()
    x = torch.randn(7, 2)
    by_hand = torch.tanh(x @ net.fc1.weight.T + net.fc1.bias) @ net.fc2.weight.T + net.fc2.bias
    assert torch.allclose(net(x), by_hand)
    assert [name for name, _ in net.named_children()][:2] == ["fc1", "fc2"]


def test_deep_mlp_of_depth_one_starts_where_the_mlp_starts():
    torch.manual_seed(3)
    mlp = MLP(hidden=5)
    torch.manual_seed(3)
    deep = DeepMLP(hidden=5, depth=1)
    for a, b in zip(mlp.parameters(), deep.parameters(), strict=True):
        assert torch.equal(a, b)
    x = torch.randn(4, 2)
    assert torch.equal(mlp(x), deep(x))


def test_n_out_gives_one_logit_per_class():
    assert MLP(n_out=3)(torch.zeros(5, 2)).shape == (5, 3)
    assert DeepMLP(depth=2, n_out=4)(torch.zeros(5, 2)).shape == (5, 4)
