"""The chapter's script: the four pillars, then XOR in a plain PyTorch loop.

`python -m xor_lightning.intro` prints what the chapter prints; `... intro gotchas` runs
the chapter's warnings (zero_grad, eval/no_grad, logits vs probabilities, float64) and
prints what goes wrong. It imports only torch and numpy, and uses the project's own data
(`data.py`) and network (`model.py`), so the Lightning project and this loop train the
very same thing.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from torch import nn

from xor_lightning.data import XORDataset, make_xor
from xor_lightning.model import MLP


def tensors() -> None:
    """Pillar 1: tensors, and the float64 surprise at the NumPy bridge."""
    a = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    print("shape:", tuple(a.shape), "dtype:", a.dtype)
    print("a.mean():", a.mean().item())
    print("a @ a.T:\n", a @ a.T)
    print(torch.from_numpy(np.array([1.0, 2.0, 3.0])).dtype)


def autograd() -> None:
    """Pillar 3: y = x0² + x1², so backward fills x.grad with 2x."""
    x = torch.tensor([2.0, 3.0], requires_grad=True)
    y = (x**2).sum()
    y.backward()
    print("y:", y.item())
    print("x.grad:", x.grad)


def train_xor(
    epochs: int = 401, seed: int = 0, problem: str = "xor", noise: float = 0.0, aspect: float = 1.0
) -> MLP:
    """Pillars 2 and 4: the model and the zero_grad -> forward -> backward -> step loop.

    On 400 points of `problem` with `noise` and `aspect` (`data.py`); `problem="clusters"`
    with the values of conf/data/clusters.yaml and the seed of conf/experiment/chapter.yaml
    is the run fitted to the chapter's printed losses.
    """
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = XORDataset(points=make_xor(400, noise, seed, problem=problem, aspect=aspect))
    X, y = data.X.to(device), data.y.to(device)
    print(f"X is a tensor of shape {tuple(X.shape)}, dtype {X.dtype}")
    print(f"device: {device} (CUDA available: {torch.cuda.is_available()})")

    model = MLP().to(device)
    loss_fn = nn.BCEWithLogitsLoss()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for epoch in range(epochs):
        opt.zero_grad()  # 1. clear last step's gradients
        logits = model(X)  # 2. forward pass
        loss = loss_fn(logits, y)
        loss.backward()  # 3. autograd computes every .grad
        opt.step()  # 4. optimizer updates every parameter
        if epoch % 100 == 0:
            acc = ((logits > 0).float() == y).float().mean().item()
            print(f"epoch {epoch} loss {loss.item():.4f} train-acc {acc:.3f}")
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"model has {n_params} learnable parameters")
    return model


def gotcha_zero_grad() -> None:
    """backward() adds to .grad: without zero_grad, gradients pile up."""
    print("1. Gradients accumulate: call opt.zero_grad() every step")
    x = torch.tensor([2.0, 3.0], requires_grad=True)
    (x**2).sum().backward()
    print("   after one backward:        x.grad =", x.grad)
    (x**2).sum().backward()
    print("   a second, without zeroing: x.grad =", x.grad, "(doubled)")
    x.grad.zero_()
    (x**2).sum().backward()
    print("   zeroed, then backward:     x.grad =", x.grad)


def gotcha_eval_no_grad() -> None:
    """Dropout is random in train mode, off in eval mode; no_grad records no graph."""
    print("2. model.eval() changes layers like dropout; torch.no_grad() skips the graph")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.Dropout(p=0.5), nn.Linear(16, 1))
    x = torch.ones(1, 2)
    model.train()
    a, b = model(x).item(), model(x).item()
    print(f"   train mode, same input twice: {a:.4f} vs {b:.4f} (dropout differs)")
    model.eval()
    a, b = model(x).item(), model(x).item()
    print(f"   eval mode, same input twice:  {a:.4f} vs {b:.4f} (identical)")
    out = model(x)
    grad_fn = type(out.grad_fn).__name__
    print(f"   outside no_grad: requires_grad={out.requires_grad}, grad_fn={grad_fn}")
    with torch.no_grad():
        out = model(x)
    print(f"   inside no_grad:  requires_grad={out.requires_grad}, grad_fn={out.grad_fn}")


def gotcha_logits() -> None:
    """sigmoid then BCELoss saturates; probabilities fed to a logits loss are wrong."""
    print("3. Feed logits to BCEWithLogitsLoss; sigmoid + BCELoss overflows")
    logit, target = torch.tensor([30.0]), torch.tensor([0.0])  # confidently wrong
    exact = nn.BCEWithLogitsLoss()(logit, target).item()
    prob = torch.sigmoid(logit)
    print(f"   BCEWithLogitsLoss(logit=30, y=0):   {exact:.4f} (exact: 30 + log(1 + e^-30))")
    print(f"   sigmoid(30) in float32:            {prob.item()} (rounded to exactly 1)")
    print(f"   BCELoss(sigmoid(30), y=0):         {nn.BCELoss()(prob, target).item():.4f} "
          "(log(0) = -inf, clamped to 100: wrong)")  # fmt: skip
    wrong = nn.BCEWithLogitsLoss()(prob, target).item()
    print(f"   BCEWithLogitsLoss(probability):    {wrong:.4f} (treats 1.0 as a logit: wrong)")


def gotcha_float64() -> None:
    """NumPy is float64, the model float32: the bridge keeps the dtype, the model refuses."""
    print("4. float64 from NumPy into a float32 model raises; .float() fixes it")
    model = MLP()
    x = torch.from_numpy(np.array([[0.5, -0.5]]))
    print("   torch.from_numpy(np.array(...)).dtype:", x.dtype)
    try:
        model(x)
    except RuntimeError as e:
        print("   model(x) raises RuntimeError:", str(e).splitlines()[0])
    print("   model(x.float()) works:", tuple(model(x.float()).shape))


def gotchas() -> None:
    for show in (gotcha_zero_grad, gotcha_eval_no_grad, gotcha_logits, gotcha_float64):
        show()
        print()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args == ["gotchas"]:
        gotchas()
        return
    if args:
        raise SystemExit("usage: python -m xor_lightning.intro [gotchas]")
    tensors()
    autograd()
    train_xor()


if __name__ == "__main__":
    main()
