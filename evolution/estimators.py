"""Fitness estimators: the ``Estimator`` protocol, the ``Estimate`` record, and ``TrainEstimator``.

An estimator scores a batch of genomes; a genome that fails (raises, diverges) gets an Estimate
with an error message and never crashes a search. Estimators that learn as the search goes
(supernet, hypernet) do it in the optional ``update(population)`` hook, called once per iteration.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Iterator, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from evolution.genome import Genome
from evolution.morphism import child_state
from evolution.mutations import Inheritance
from evolution.network import SparseNet


@dataclass
class Estimate:
    """``score``: estimated validation accuracy (higher is better); ``seconds`` it cost;
    ``error``: why the genome failed (score is then NaN); ``state``: trained keyed weights, for
    Lamarckian children."""

    score: float
    seconds: float
    error: str | None = None
    state: dict[str, Tensor] | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(np.isfinite(self.score))


@dataclass(frozen=True)
class Parent:
    """What a child inherits from: the parent's keyed weights and the mutation that made the child."""

    state: dict[str, Tensor]
    how: Inheritance


@runtime_checkable
class Estimator(Protocol):
    def estimate(self, genomes: Sequence[Genome], parents: Sequence[Parent | None] | None = None) -> list[Estimate]:
        """One Estimate per genome, in order."""
        ...


@runtime_checkable
class Initializer(Protocol):
    def initialise(self, genome: Genome) -> SparseNet:
        """A standalone network of ``genome`` with predicted starting weights (e.g. a hypernet's)."""
        ...


def build_estimator(spec: dict, data, checkpoint: str | None = None, where: str = "the config"):
    """The estimator a config's ``{class_path, init_args}`` names, on ``data``; ``checkpoint`` fills
    that argument where the class takes one (a run hands it the checkpoint it trained). Settings
    the class does not take are one line naming ``where``."""
    from inspect import signature

    from jsonargparse._util import import_object  # the class a class_path names

    cls = import_object(spec["class_path"])
    args = {**(spec.get("init_args") or {}), "data": data}
    if checkpoint is not None and "checkpoint" in signature(cls).parameters:
        args["checkpoint"] = checkpoint
    try:
        return cls(**args)
    except TypeError as err:
        raise ValueError(f"{where}: {spec['class_path']} does not take these settings ({err})") from None


def restore_estimator(estimator, state: dict | None, path) -> None:
    """Give ``estimator`` back what it learned during a search (its ``state_dict``, saved in the
    search state at ``path``); one line when it does not fit."""
    if state is None or not hasattr(estimator, "load_state_dict"):
        return
    try:
        estimator.load_state_dict(state)
    except (RuntimeError, KeyError) as err:
        raise ValueError(f"search state {path} does not fit the estimator (was its checkpoint file replaced "
                         f"since the search began?): {str(err).splitlines()[0][:200]}") from None


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


def genome_seed(genome: Genome, seed: int) -> int:
    """A seed fixed by the genome and a base seed, so an estimate does not depend on batch order."""
    h = hashlib.sha1(genome.edges.tobytes() + genome.hidden.tobytes() + str(seed).encode()).digest()
    return int.from_bytes(h[:8], "little") & (2**63 - 1)


class TrainEstimator:
    """Low-fidelity training: ``steps`` Adam steps on the train split, scored by validation accuracy.

    With ``warm_start`` a child starts from its parent's inherited weights (Lamarckian); its first
    ``new_edge_steps`` steps then train only the edges the parent lacked, as the original search did
    (two phases), before all weights train. ``schedule`` ``cosine`` anneals the rate to 0 over the
    steps. With ``initializer`` (e.g. the hypernet) each genome starts
    from predicted weights instead of a random init: "predict, then fine-tune". Full budgets (35-50 epochs per child) reproduce the
    original neuron-level search: the baseline the cheap estimators are measured against.

    A plain loop over cached tensors rather than a Lightning Trainer: a candidate trains for tens of
    steps, less time than a Trainer takes to set up.
    """

    def __init__(self, data, steps: int = 200, epochs: float | None = None, batch_size: int = 128,
                 lr: float = 3e-3, warm_start: bool = False, new_edge_steps: int = 0, keep_state: bool = False,
                 max_val: int | None = None, device: str = "cpu", seed: int = 0,
                 initializer: Initializer | None = None, schedule: str = "constant") -> None:
        if steps < 0 or batch_size < 1 or lr <= 0:
            raise ValueError(f"TrainEstimator: steps {steps}, batch_size {batch_size}, lr {lr}: expected steps >= 0, "
                             "batch_size >= 1, lr > 0")
        if schedule not in ("constant", "cosine"):
            raise ValueError(f"TrainEstimator: schedule {schedule!r}: expected 'constant' or 'cosine'")
        self.data = data
        self.steps, self.epochs, self.batch_size, self.lr = steps, epochs, batch_size, lr
        self.warm_start, self.new_edge_steps = warm_start, new_edge_steps
        self.keep_state = keep_state or warm_start
        self.max_val, self.device, self.seed = max_val, torch.device(device), seed
        self.initializer, self.schedule = initializer, schedule
        if hasattr(initializer, "check_data"):  # predictions made for another data shape mean nothing
            initializer.check_data(data)
        self._tensors: dict[str, tuple[Tensor, Tensor]] = {}

    def _split(self, name: str) -> tuple[Tensor, Tensor]:
        if name not in self._tensors:
            x, y = self.data.tensors(name)
            if name == "val" and self.max_val:
                x, y = x[: self.max_val], y[: self.max_val]
            self._tensors[name] = (x.to(self.device), y.to(self.device))
        return self._tensors[name]

    def estimate(self, genomes: Sequence[Genome], parents: Sequence[Parent | None] | None = None) -> list[Estimate]:
        parents = parents or [None] * len(genomes)
        return [self._one(g, p) for g, p in zip(genomes, parents)]

    def _one(self, genome: Genome, parent: Parent | None) -> Estimate:
        start = time.perf_counter()
        try:
            score, state = self._train(genome, parent)
        except FloatingPointError as err:
            return Estimate(float("nan"), time.perf_counter() - start, str(err))
        except Exception as err:  # a failed candidate is recorded, never crashes the search
            return Estimate(float("nan"), time.perf_counter() - start, f"{type(err).__name__}: {err}")
        return Estimate(score, time.perf_counter() - start, None, state if self.keep_state else None)

    def _train(self, genome: Genome, parent: Parent | None) -> tuple[float, dict[str, Tensor] | None]:
        gen = torch.Generator().manual_seed(genome_seed(genome, self.seed))
        net = SparseNet(genome, gen)
        if self.initializer is not None:
            net.set_weights(self.initializer.initialise(genome).weights())
        new_mask = None
        if self.warm_start and parent is not None:
            net.load_keyed(child_state(parent.state, genome, parent.how))
            sp = genome.space
            old = np.isin(sp.edge_id(*genome.edges.T), sp.edge_id(*parent.state["edges"].numpy().T))
            new_mask = torch.as_tensor(~old[np.unique(genome.groups, return_index=True)[1]])
        net = net.to(self.device)
        x, y = self._split("train")
        steps = self.steps if self.epochs is None else int(np.ceil(self.epochs * len(y) / self.batch_size))
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        order = torch.randperm(len(y), generator=gen)
        pos, losses = 0, []
        net.train()
        for step in range(steps):
            if self.schedule == "cosine":  # per step from lr to 0, as verify's retraining anneals
                for group in opt.param_groups:
                    group["lr"] = self.lr * 0.5 * (1 + math.cos(math.pi * step / steps))
            if pos + self.batch_size > len(y):
                order, pos = torch.randperm(len(y), generator=gen), 0
            idx = order[pos:pos + self.batch_size].to(self.device)
            pos += self.batch_size
            loss = finite(F.cross_entropy(net(x[idx]), y[idx]), step)
            losses.append(loss.detach())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if new_mask is not None and step < self.new_edge_steps:
                # Phase one: only the new edges move; the inherited function is kept.
                net.weight.grad.mul_(new_mask.to(net.weight.grad))
                for p in (net.norm_weight, net.norm_bias, net.bias):
                    p.grad = None
            opt.step()
        rose(losses)
        return self.score(net), (net.keyed_state() if self.keep_state else None)

    @torch.no_grad()
    def score(self, net: SparseNet) -> float:
        """Validation accuracy in chunks (inference kernel)."""
        net.eval()
        x, y = self._split("val")
        correct = 0
        for i in range(0, len(y), 4096):
            # finite() saw every loss but the one after the last step: a blown-up net scores chance, not an error.
            logits = finite(net(x[i:i + 4096]), None)
            correct += int((logits.argmax(1) == y[i:i + 4096]).sum())
        return correct / len(y)
