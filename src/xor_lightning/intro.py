"""The chapter's script: the four pillars, then XOR in a plain PyTorch loop.

`python -m xor_lightning.intro` prints what the chapter prints. It imports only torch
and numpy, and uses the project's own data (`data.py`) and network (`model.py`), so the
Lightning project and this loop train the very same thing.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from xor_lightning.data import XORDataset
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


def train_xor(epochs: int = 401, seed: int = 0) -> MLP:
    """Pillars 2 and 4: the model and the zero_grad -> forward -> backward -> step loop."""
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = XORDataset(n=400, seed=seed)
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
        opt.step()  # 4. the optimizer updates every parameter
        if epoch % 100 == 0:
            acc = ((logits > 0).float() == y).float().mean().item()
            print(f"epoch {epoch} loss {loss.item():.4f} train-acc {acc:.3f}")
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"model has {n_params} learnable parameters")
    return model


def main() -> None:
    tensors()
    autograd()
    train_xor()


if __name__ == "__main__":
    main()
