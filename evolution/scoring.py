"""What the estimators and trainers share, below the estimators and the plugins: ``finite`` (a loss
or logits checked for divergence, as one line); validation accuracy in chunks (``correct_counts``,
``accuracy``); and the population-guided update of the supernet and hypernet estimators
(``population_steps``, ``population_update``, and ``update_state`` / ``load_update_state``, what
such an estimator saves with a search's state)."""
from __future__ import annotations

import copy
import math
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from evolution.genome import Genome


def rose(losses: list[Tensor], factor: float = 2.0) -> None:
    """A ``FloatingPointError`` when training blew up without overflowing: the mean loss of the last
    tenth of the steps above ``factor`` times the loss of the first step (before any update), a
    plateau far above where it began, where the network scores at chance. Needs 10 steps or more."""
    if len(losses) < 10:
        return
    t = torch.stack(losses).float().cpu()
    first, last = float(t[0]), float(t[-(len(t) // 10):].mean())
    if last > factor * first:
        raise FloatingPointError(f"training diverged: the loss rose from {first:.3g} (first step) to {last:.3g} "
                                 "(mean of the last tenth of the steps); lower the learning rate")


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


CHUNK = 4096  # validation examples per forward, so large splits stay within memory


@torch.no_grad()
def correct_counts(forwards: Sequence[Callable[[Tensor], Tensor]], x: Tensor, y: Tensor,
                   chunk: int = CHUNK) -> Tensor:
    """How many examples of ``x`` each of ``forwards`` (a network: examples to logits) classifies as
    ``y``: an int64 tensor on ``y``'s device, one count per network, ``chunk`` examples per forward."""
    correct = torch.zeros(len(forwards), dtype=torch.long, device=y.device)
    for i in range(0, len(y), chunk):
        correct += torch.stack([(f(x[i:i + chunk]).argmax(1) == y[i:i + chunk]).sum() for f in forwards])
    return correct


def accuracy(forward: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, chunk: int = CHUNK) -> float:
    """The share of ``x`` that ``forward`` classifies as ``y`` (``correct_counts`` of one network)."""
    return int(correct_counts([forward], x, y, chunk)[0]) / len(y)


def population_update(opt: torch.optim.Optimizer, lr: float, steps: int, rng: np.random.Generator,
                      population: Sequence[Genome], genomes_per_step: int, train: tuple[Tensor, Tensor],
                      batch_size: int, loss: Callable[[list[Genome], Tensor, Tensor], Tensor], what: str) -> None:
    """``steps`` (>= 1) steps of ``opt`` on ``loss(genomes, x, y)`` over the draws of
    ``population_steps``, each loss checked by ``finite`` (naming ``what``) before its step moves a weight."""
    for step, (genomes, x, y) in enumerate(population_steps(opt, lr, steps, rng, population, genomes_per_step,
                                                            train, batch_size)):
        value = finite(loss(genomes, x, y), step, what)
        opt.zero_grad()
        value.backward()
        opt.step()
    with torch.no_grad():  # the last step's result: a blown-up model would score every child at chance
        finite(loss(genomes, x, y), steps, what)


def update_state(name: str, model: torch.nn.Module, rng: np.random.Generator,
                 opt: torch.optim.Optimizer | None) -> dict:
    """What a population-trained estimator saves with a search's state, so a resumed search continues
    the same ``model`` (saved under ``name``), draws and optimizer (None: the estimator does not update)."""
    # A snapshot, not live references: the model keeps training after this call.
    return copy.deepcopy({name: model.state_dict(), "rng": rng.bit_generator.state,
                          "opt": None if opt is None else opt.state_dict()})


def load_update_state(state: dict, name: str, model: torch.nn.Module, rng: np.random.Generator,
                      opt: torch.optim.Optimizer | None) -> None:
    """Give ``model``, ``rng`` and ``opt`` back what ``update_state`` saved."""
    model.load_state_dict(state[name])
    rng.bit_generator.state = state["rng"]
    if opt is not None and state["opt"] is not None:
        opt.load_state_dict(state["opt"])
