"""``TrainEstimator``: scores each genome by training it briefly (the search's own recipe, and the
baseline the cheap estimators are measured against); ``train_job`` runs one candidate as an
executor's job; ``genome_seed`` fixes a candidate's seed by its genome."""
from __future__ import annotations

import hashlib
import math
import time
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from evolution.estimators import Estimate, Initializer, Parent
from evolution.device import resolve_device
from evolution.genome import Genome
from evolution.morphism import child_state
from evolution.network import SparseNet
from evolution.scoring import accuracy, finite, rose


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
    steps, less time than a Trainer takes to set up. ``device``: where candidates train (``auto``: a
    GPU when torch sees one, else the CPU; a search's ``--accelerator`` decides for ``auto``).
    """

    def __init__(self, data, steps: int = 200, epochs: float | None = None, batch_size: int = 128,
                 lr: float = 3e-3, warm_start: bool = False, new_edge_steps: int = 0, keep_state: bool = False,
                 max_val: int | None = None, device: str = "auto", seed: int = 0,
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
        self.max_val, self.device, self.seed = max_val, resolve_device(device), seed
        self.initializer, self.schedule = initializer, schedule
        if hasattr(initializer, "check_data"):  # predictions made for another data shape mean nothing
            initializer.check_data(data)
        self._tensors: dict[str, tuple[Tensor, Tensor]] = {}
        self.executor = None
        self._worker: TrainEstimator | None = None

    def use_executor(self, executor) -> None:
        """Train the candidates of each ``estimate`` call as the executor's jobs (``evolution.executor``)."""
        self.executor, self._worker = executor, None

    def __getstate__(self) -> dict:
        # What a Ray task receives: the split tensors, not the DataModule or the executor.
        return {**self.__dict__, "data": None, "executor": None, "_worker": None}

    def _split(self, name: str) -> tuple[Tensor, Tensor]:
        if name not in self._tensors:
            x, y = self.data.tensors(name)
            if name == "val" and self.max_val:
                x, y = x[: self.max_val], y[: self.max_val]
            self._tensors[name] = (x.to(self.device), y.to(self.device))
        return self._tensors[name]

    def estimate(self, genomes: Sequence[Genome], parents: Sequence[Parent | None] | None = None) -> list[Estimate]:
        parents = parents or [None] * len(genomes)
        if self.executor is None or self.executor.name == "local":
            return [self._one(g, p) for g, p in zip(genomes, parents)]
        if self._worker is None:  # one copy with its tensors, put in the executor's store once
            self._split("train"), self._split("val")
            self._worker = self
        from evolution.executor import Failed

        out = self.executor.map(train_job, self._worker, list(zip(genomes, parents)))
        return [Estimate(float("nan"), 0.0, r.error) if isinstance(r, Failed) else r for r in out]

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
            net.set_weights(self.initializer.initialize(genome).weights())
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
        # finite() saw every loss but the one after the last step: a blown-up net scores chance, not an error.
        return accuracy(lambda x: finite(net(x), None), *self._split("val"))


def train_job(est: TrainEstimator, item: tuple[Genome, Parent | None]) -> Estimate:
    """One candidate trained by ``est`` as an executor's job: a divergence is the candidate's result,
    any other error raises (the executor retries it, then records it)."""
    genome, parent = item
    start, cpu = time.perf_counter(), time.process_time()
    try:
        score, state = est._train(genome, parent)
    except FloatingPointError as err:
        return Estimate(float("nan"), time.perf_counter() - start, str(err), cpu_seconds=time.process_time() - cpu)
    return Estimate(score, time.perf_counter() - start, None, state if est.keep_state else None,
                    time.process_time() - cpu)


def rank_check_truth(data, settings) -> TrainEstimator | None:
    """The search's rank check truth: ``settings.rank_check_steps`` steps of standalone training
    (None when ``settings.rank_check_every`` is 0)."""
    if not settings.rank_check_every:
        return None
    return TrainEstimator(data, steps=settings.rank_check_steps, seed=settings.seed)

