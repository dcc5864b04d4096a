"""The chapter's plain PyTorch script: the baseline `make bench` compares against.

It imports only torch, makes XOR points and runs Adam steps of the 2-8-1 MLP, full batch
by default (the chapter's 401 steps), printing every 100 epochs. Standalone on purpose:
no project code. With --batch-size it reshuffles once per epoch and slices batches.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn


def fit(n: int = 400, batch_size: int = 0, epochs: int = 401, device: str = "cpu") -> float:
    """Train; return the seconds the loop took (data made and moved beforehand)."""
    torch.manual_seed(0)
    X = torch.rand(n, 2) * 2 - 1
    y = (X[:, 0] * X[:, 1] < 0).float().unsqueeze(1)
    X, y = X.to(device), y.to(device)
    model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)).to(device)
    loss_fn = nn.BCEWithLogitsLoss()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    bs = batch_size or n

    start = time.perf_counter()
    for epoch in range(epochs):
        if bs < n:
            perm = torch.randperm(n, device=device)
            Xs, ys = X[perm], y[perm]
        else:
            Xs, ys = X, y
        for i in range(0, n, bs):
            opt.zero_grad()
            loss = loss_fn(model(Xs[i : i + bs]), ys[i : i + bs])
            loss.backward()
            opt.step()
        if epoch % 100 == 0:
            print(f"epoch {epoch} loss {loss.item():.4f}")
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=0, help="0: the full batch")
    parser.add_argument("--epochs", type=int, default=401)
    parser.add_argument("--device", default="cpu")
    a = parser.parse_args()
    print(f"fit_seconds {fit(a.n, a.batch_size, a.epochs, a.device):.4f}")
