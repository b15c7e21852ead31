"""Morphism drift: how far each mutation moves a trained parent's function under weight inheritance.

A parent (a random 2-level genome on digits, trained 400 Adam steps) is mutated N times by each
operator; every child inherits the parent's weights (``evolution.morphism.inherit``: shared edges
copy, new edges 0, Net2Wider halving for duplicates) and is compared with the parent on the
validation split: max |delta logit| and accuracy change. Writes ``benchmarks/results/morphism_drift.json``.

    python -m benchmarks.morphism_drift [--children 40]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from benchmarks import common
from evolution.data import DigitsDataModule
from evolution.estimators import TrainEstimator
from evolution.genome import SearchSpace
from evolution.morphism import drift, inherit
from evolution.mutations import OPERATORS
from evolution.network import SparseNet
from evolution.sampling import random_genome


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--children", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    data = DigitsDataModule(seed=0)
    space = SearchSpace(data.input_shape, data.num_classes, levels=3, width=64)
    rng = np.random.default_rng(args.seed)
    genome = random_genome(space, rng, density=0.3, n_levels=2, fill=(0.75, 1.0))
    trainer = TrainEstimator(data, steps=400, keep_state=True, seed=args.seed)
    est = trainer.estimate([genome])[0]
    parent = SparseNet(genome)
    parent.load_keyed(est.state)
    parent.mode = "dense"
    x, y = data.tensors("val")
    print(f"parent: {genome.summary()}, validation accuracy {est.score:.4f}")
    rows = {}
    for name, op in OPERATORS.items():
        logit, dacc = [], []
        for _ in range(args.children):
            child_g, how = op(genome, rng)
            child = inherit(parent, child_g, how)
            child.mode = "dense"
            d = drift(parent, child, x, y)
            logit.append(d.max_abs_logit)
            dacc.append(d.child_acc - d.parent_acc)
        rows[name] = {"children": args.children, "max_abs_logit_median": float(np.median(logit)),
                      "max_abs_logit_max": float(np.max(logit)), "acc_change_mean": float(np.mean(dacc)),
                      "acc_change_min": float(np.min(dacc)), "exact_share": float(np.mean(np.array(logit) == 0.0))}
    print(f"{'mutation':>17} | {'max|dlogit| median':>18} {'max':>8} | {'acc change mean':>15} {'worst':>7} | exact")
    for name, r in rows.items():
        print(f"{name:>17} | {r['max_abs_logit_median']:>18.2e} {r['max_abs_logit_max']:>8.2e} | "
              f"{100 * r['acc_change_mean']:>+14.2f}pp {100 * r['acc_change_min']:>+6.2f}pp | {r['exact_share']:.0%}")
    out = common.write_results("morphism_drift", {"parent_acc": est.score, "parent": genome.summary(), "mutations": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
