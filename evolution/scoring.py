"""What every estimator and trainer shares, below the estimators and the plugins: ``finite`` (a loss
or logits checked for divergence, as one line) and ``population_steps`` (the draws of a
population-guided update)."""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from evolution.genome import Genome


def population_steps(opt: torch.optim.Optimizer, lr: float, steps: int, rng: np.random.Generator,
                     population: Sequence[Genome], genomes_per_step: int, train: tuple[Tensor, Tensor],
                     batch_size: int) -> Iterator[tuple[list[Genome], Tensor, Tensor]]:
    """The draws of one population-guided update (supernet and hypernet estimators): per step, sets
    ``opt``'s rate on a cosine from ``lr`` to 0 (so the scores that follow do not favour the genomes
    drawn last) and yields ``genomes_per_step`` genomes of the population and a batch of ``train``."""
    x, y = train
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        pick = rng.choice(len(population), min(genomes_per_step, len(population)), replace=False)
        idx = torch.as_tensor(rng.choice(len(y), min(batch_size, len(y)), replace=False), device=y.device)
        yield [population[i] for i in pick], x[idx], y[idx]


def finite(value: Tensor, step: int | None, what: str = "training") -> Tensor:
    """``value`` (a loss, checked before its step moves any weight, or the logits of a trained net),
    or a one-line ``FloatingPointError`` when any of it is NaN or infinite."""
    if not bool(torch.isfinite(value).all()):
        at = f"at step {step}" if step is not None else "after its last step"
        got = f"loss is {value.item()}" if value.numel() == 1 else "its outputs are not finite"
        raise FloatingPointError(f"{what} diverged {at}: {got}; lower the learning rate")
    return value
