"""Learning-rate schedule: linear warm-up, then cosine decay that follows steps or the clock."""

from __future__ import annotations

import math
import time

from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(optimizer, warmup_steps: int, training_steps: int, base_lr: float, init_lr: float,
                  min_factor: float, max_seconds: float = 0.0, clock=None) -> LambdaLR:
    """LambdaLR from ``init_lr`` up to ``base_lr`` in ``warmup_steps`` steps, then a cosine down
    to ``base_lr * min_factor``. With ``max_seconds`` the decay's progress is the larger of the
    step fraction and the elapsed-time fraction, so a run cut by a time budget still ends cool.
    ``clock()`` returns the seconds spent so far (default: since this call)."""
    start = time.monotonic()
    clock = clock or (lambda: time.monotonic() - start)
    warmup_steps = max(1, warmup_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (init_lr + (base_lr - init_lr) * step / warmup_steps) / base_lr
        progress = (step - warmup_steps) / max(1, training_steps - warmup_steps)
        if max_seconds > 0:
            progress = max(progress, clock() / max_seconds)
        progress = min(1.0, progress)
        return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
