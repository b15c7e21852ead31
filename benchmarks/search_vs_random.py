"""Evolution vs random search with the same estimator, evaluations and seeds (mnist-t10k).

Evolution: ``Search`` (tournament on Pareto rank and crowding, aging, the six mutations).
Random: the initial sampler alone, drawing as many genomes as evolution estimates. Both score with
``TrainEstimator`` and track the hypervolume of their all-time front (error vs FLOPs, normalised by
the same scale and reference point) after the same number of evaluations. Writes
``benchmarks/results/search_vs_random.json``.

    python -m benchmarks.search_vs_random [--iterations 20] [--population 16] [--children 8] [--seeds 3]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import common
from evolution import cost, nsga2
from evolution.data import IDXDataModule
from evolution.estimators import TrainEstimator
from evolution.sampling import random_genome
from evolution.search import Search, SearchSettings



def random_search(search: Search, evaluations: list[int]) -> list[float]:
    """Hypervolume of random genomes' front after each count in ``evaluations``."""
    rng = np.random.default_rng(search.s.seed + 1000)
    F, hv = [], []
    ref = np.array([1.0] + [2.0] * (len(search.s.objectives) - 1))
    for target in evaluations:
        while len(F) < target:
            g = random_genome(search.space, rng, density=search.s.density)
            e = search.estimator.estimate([g])[0]
            if e.ok:
                F.append([1 - e.score, cost.flops(g).total / search.scale[1]])
            else:
                F.append([np.inf, np.inf])
        pts = np.array([f for f in F if np.isfinite(f).all()])
        hv.append(float(nsga2.hypervolume(pts[nsga2.pareto_front(pts)], ref)))
    return hv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--population", type=int, default=16)
    ap.add_argument("--children", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=100)
    common.add_data_root(ap)
    args = ap.parse_args()
    data = IDXDataModule(str(common.mnist_t10k(args.data_root)), seed=0, val_fraction=0.1, test_fraction=0.1)
    runs = []
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as tmp:
            settings = SearchSettings(run_dir=tmp, seed=seed, iterations=args.iterations, population=args.population,
                                      children=args.children, levels=3, width=256, density=0.05, progress=False)
            estimator = TrainEstimator(data, steps=args.steps, max_val=1000, seed=seed)
            search = Search(settings, data, estimator)
            start = time.perf_counter()
            search.run()
            evo_s = time.perf_counter() - start
            lines = (Path(tmp) / "history.jsonl").read_text().splitlines()
        evals = [args.population + i * args.children for i in range(args.iterations + 1)]
        start = time.perf_counter()
        hv_random = random_search(search, evals)
        rnd_s = time.perf_counter() - start
        runs.append({"seed": seed, "evaluations": evals, "hv_evolution": search.hv, "hv_random": hv_random,
                     "seconds_evolution": evo_s, "seconds_random": rnd_s, "candidates": len(lines)})
        print(f"seed {seed}: evolution hv {search.hv[-1]:.4f} ({evo_s:.0f} s), random hv {hv_random[-1]:.4f} ({rnd_s:.0f} s)")
    hv_e = np.mean([r["hv_evolution"] for r in runs], axis=0)
    hv_r = np.mean([r["hv_random"] for r in runs], axis=0)
    n = sum(r["candidates"] for r in runs)
    per = sum(r["seconds_evolution"] for r in runs) / n
    print(f"hypervolume per iteration, mean of {args.seeds} seeds (error vs FLOPs, normalised; higher is better)")
    print(f"{'iteration':>9} {'evals':>6} {'evolution':>10} {'random':>8} {'ratio':>6}")
    for i, (a, b) in enumerate(zip(hv_e, hv_r)):
        print(f"{i:>9} {runs[0]['evaluations'][i]:>6} {a:>10.4f} {b:>8.4f} {a / b:>6.3f}")
    print(f"final ratio evolution / random: {hv_e[-1] / hv_r[-1]:.3f}; {per:.2f} s per candidate")
    out = common.write_results("search_vs_random", {"hv_evolution": float(hv_e[-1]), "hv_random": float(hv_r[-1]),
                                                    "hv_ratio": float(hv_e[-1] / hv_r[-1]),
                                                    "seconds_per_candidate": per, "steps": args.steps, "runs": runs})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
