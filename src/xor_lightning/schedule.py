"""The learning-rate schedule the `scheduler` config group names beyond torch's own.

`step` and `plateau` are torch's `StepLR` and `ReduceLROnPlateau`; `cosine` is
`warmup_cosine`. Under manual optimization Lightning steps none of them: `XORModule` does,
once per epoch (`on_train_epoch_end`), or after each validation for `ReduceLROnPlateau`.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(optimizer: Optimizer, max_epochs: int, warmup_epochs: int = 0) -> LambdaLR:
    """Epoch e runs at base_lr · f(e): a linear warm-up, f(e) = (e + 1) / (w + 1) for e < w,
    then cosine annealing, f(e) = (1 + cos(π (e - w) / (max_epochs - w))) / 2, which
    reaches 0 at `max_epochs` (and stays there).

    The factor is a closed form of the epoch, not a state: a checkpoint stores only the
    epoch count, so a resumed run follows the same curve.
    """

    def factor(epoch: int) -> float:
        if epoch < warmup_epochs:
            return (epoch + 1) / (warmup_epochs + 1)
        progress = min(1.0, (epoch - warmup_epochs) / (max_epochs - warmup_epochs))
        return 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
