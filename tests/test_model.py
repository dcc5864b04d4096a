import lightning as L
import torch
from hydra.utils import instantiate

from xor_lightning.datamodule import XORDataModule
from xor_lightning.model import MLP
from xor_lightning.module import XORModule


def test_mlp_has_33_parameters_and_returns_one_logit_per_point():
    net = MLP()
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == 33
    out = net(torch.zeros(5, 2))
    assert out.shape == (5, 1)


def test_mlp_outputs_logits_not_probabilities():
    torch.manual_seed(0)
    net = MLP(hidden=4)
    with torch.no_grad():
        net[-1].weight.fill_(10.0)
        net[-1].bias.fill_(-50.0)
    out = net(torch.randn(100, 2))
    assert (out < 0).all() and (out < -1).any()  # a probability would lie in [0, 1]


def test_mlp_hidden_and_activation():
    assert sum(p.numel() for p in MLP(hidden=4).parameters()) == 2 * 4 + 4 + 4 + 1
    assert isinstance(MLP(activation="relu")[1], torch.nn.ReLU)
    deep = MLP(hidden=4, depth=3)
    assert sum(p.numel() for p in deep.parameters()) == (2 * 4 + 4) + 2 * (4 * 4 + 4) + (4 + 1)
    assert deep(torch.zeros(3, 2)).shape == (3, 1)


def test_module_fast_dev_run_and_predict_probabilities(make_cfg):
    cfg = make_cfg()
    module = XORModule(instantiate(cfg.model.net), instantiate(cfg.model.optimizer))
    assert isinstance(module.configure_optimizers(), torch.optim.Adam)
    assert module.configure_optimizers().param_groups[0]["lr"] == 0.05
    dm = XORDataModule(n_samples=32, n_val=16, n_test=16)
    trainer = L.Trainer(fast_dev_run=True, accelerator="cpu", enable_progress_bar=False)
    trainer.fit(module, datamodule=dm)
    assert {"train/loss", "train/acc", "val/loss", "val/acc"} <= set(trainer.callback_metrics)
    probs = torch.cat(trainer.predict(module, datamodule=dm))
    assert probs.shape == (16, 1)
    assert ((probs >= 0) & (probs <= 1)).all()
