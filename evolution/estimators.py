"""Fitness estimators: the ``Estimator`` protocol, the ``Estimate`` record, ``Parent``, the
``Initializer`` protocol, and ``build_estimator`` (the estimator a config names).

An estimator scores a batch of genomes; a genome that fails (raises, diverges) gets an Estimate
with an error message and never crashes a search. Estimators that learn as the search goes
(supernet, hypernet) do it in the optional ``update(population)`` hook, called once per iteration.

The estimators live in rooms of their own (``evolution.train_estimator``, ``oneshot.estimator``,
``hypernet.estimator``) and their shared helpers in ``evolution.scoring``; the names that lived here
before (``TrainEstimator``, ``train_job``, ``genome_seed``, ``finite``, ``population_steps``) are
still importable from here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

import numpy as np
from torch import Tensor

from evolution.genome import Genome
from evolution.mutations import Inheritance
from evolution.network import SparseNet
from evolution.scoring import finite, population_steps

__all__ = ["Estimate", "Estimator", "Initializer", "Parent", "build_estimator", "restore_estimator", "finite",
           "population_steps", "TrainEstimator", "train_job", "genome_seed"]
_MOVED = {"TrainEstimator", "train_job", "genome_seed"}  # to evolution.train_estimator


def __getattr__(name: str):
    # Imported when first asked for, not above: evolution.train_estimator imports Estimate from here.
    if name in _MOVED:
        from evolution import train_estimator

        return getattr(train_estimator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class Estimate:
    """``score``: estimated validation accuracy (higher is better); ``seconds`` it cost;
    ``error``: why the genome failed (score is then NaN); ``state``: trained keyed weights, for
    Lamarckian children; ``cpu_seconds``: CPU time spent in another process (an executor's task) on it."""

    score: float
    seconds: float
    error: str | None = None
    state: dict[str, Tensor] | None = field(default=None, repr=False)
    cpu_seconds: float | None = None

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
    def initialize(self, genome: Genome) -> SparseNet:
        """A standalone network of ``genome`` with predicted starting weights (e.g. a hypernet's)."""
        ...


def build_estimator(spec: dict, data, checkpoint: str | None = None, where: str = "the config",
                    seed: int | None = None):
    """The estimator a config's ``{class_path, init_args}`` names, on ``data``; ``checkpoint`` fills
    that argument where the class takes one (a run hands it the checkpoint it trained), ``seed``
    likewise unless the spec sets one. Settings the class does not take are one line naming ``where``."""
    from inspect import signature

    from evolution.cli import import_class

    cls = import_class(spec["class_path"])
    args = {**(spec.get("init_args") or {}), "data": data}
    takes = signature(cls).parameters
    if checkpoint is not None and "checkpoint" in takes:
        args["checkpoint"] = checkpoint
    if seed is not None and "seed" in takes:
        args.setdefault("seed", seed)
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
