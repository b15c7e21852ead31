"""The closed-form readout's cost: its Gram matrix accumulated in float32 against float64.

Scoring a genome with ``readout`` (``SupernetEstimator``, ``HypernetEstimator``) runs its hidden
levels on the fit examples, solves one ridge system per output (``evolution.readout.ridge_solve``),
then runs the validation examples. The Gram matrix ``feats^T feats`` is the one large product of the
solve. Measured side by side in one process, on the 64 genomes and the real MNIST split of
``benchmarks/throughput.py`` (supernet weights, 2,000 fit + 2,000 validation examples): seconds of
the solves both ways, seconds of the whole per-genome scoring both ways, the largest relative
coefficient difference and the largest accuracy difference.

    python -m benchmarks.readout_solve [--repeats 5] [--data-root ../shared/data]

Writes ``benchmarks/results/readout_solve.json`` (+ ``.md``).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks import common, throughput
from benchmarks.throughput import SPACE, alternate, mnist_examples
from evolution.network import level_outputs, sparse_forward
from evolution.readout import readout_features, ridge_solve
from evolution.sampling import GenomeSampler
from oneshot.supernet import Supernet

OUT = common.RESULTS / "readout_solve.json"


@torch.no_grad()
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    common.add_data_root(ap)
    args = ap.parse_args(argv)
    throughput.MNIST = common.mnist_t10k(args.data_root)  # the real MNIST split (one line when it is missing)
    load = os.getloadavg()[0]
    device = torch.device("cpu")
    x, y = mnist_examples(device)
    fit, val = (x[:2000], y[:2000]), (x[2000:], y[2000:])
    genomes = GenomeSampler(SPACE, "uniform", density=(0.003, 0.3)).sample(np.random.default_rng(0), 64)
    sup = Supernet(SPACE, torch.Generator().manual_seed(0))
    plans, weights = [sup.plan_for(g) for g in genomes], [sup.weights_for(g) for g in genomes]
    feats = [readout_features(p, level_outputs(p, w, fit[0])) for p, w in zip(plans, weights)]
    def solves(f64: bool):  # float64 features take the float64 Gram: the path before the float32 one
        return lambda: [None if r is None else ridge_solve(r._replace(feats=r.feats.double()) if f64 else r, fit[1], 10)
                        for r in feats]

    def scoring(f64: bool):  # ridge_readout's steps, then the validation pass
        def run():
            out = []
            for p, w in zip(plans, weights):
                r = readout_features(p, level_outputs(p, w, fit[0]))
                if r is not None:
                    coef, bias = ridge_solve(r._replace(feats=r.feats.double()) if f64 else r, fit[1], 10)
                    edge = w.edge.clone()
                    edge[r.edge] = coef.to(edge.dtype)
                    w = w._replace(edge=edge, bias=bias.to(w.bias.dtype))
                out.append(float((sparse_forward(p, w, val[0]).argmax(1) == val[1]).float().mean()))
            return out
        return run

    rel = max(float((a[0] - b[0]).abs().max() / b[0].abs().max().clamp_min(1e-12))
              for a, b in zip(solves(False)(), solves(True)()) if a is not None)
    acc32, acc64 = np.array(scoring(False)()), np.array(scoring(True)())
    sec = alternate({"solve_float64_gram": solves(True), "solve_float32_gram": solves(False),
                      "scoring_float64_gram": scoring(True), "scoring_float32_gram": scoring(False)}, args.repeats, device)
    doc = {"script": "benchmarks/readout_solve.py", "repeats": args.repeats, "load_average_at_start": load,
           "threads": torch.get_num_threads(), "genomes": len(genomes), "seconds": sec,
           "solve_speedup": sec["solve_float64_gram"] / sec["solve_float32_gram"],
           "scoring_speedup": sec["scoring_float64_gram"] / sec["scoring_float32_gram"],
           "solve_share_of_scoring_before": sec["solve_float64_gram"] / sec["scoring_float64_gram"],
           "coef_max_rel_diff": rel, "score_max_abs_diff": float(np.abs(acc32 - acc64).max())}
    lines = ["# Readout solve: the Gram matrix in float32", "",
             "`python -m benchmarks.readout_solve` (`benchmarks/results/readout_solve.json`): 64 genomes of the mnist grid "
             f"with supernet weights, 2,000 fit + 2,000 validation MNIST examples, {doc['threads']} threads, medians of "
             f"{args.repeats} alternating rounds; 1-minute load average at start {load:.1f}.", "",
             "| what | float64 Gram (before) s | float32 Gram s | speedup |", "| --- | --- | --- | --- |",
             f"| the 64 ridge solves | {sec['solve_float64_gram']:.3f} | {sec['solve_float32_gram']:.3f} | {doc['solve_speedup']:.2f}x |",
             f"| scoring the 64 genomes (readout + validation) | {sec['scoring_float64_gram']:.3f} | "
             f"{sec['scoring_float32_gram']:.3f} | {doc['scoring_speedup']:.2f}x |", "",
             f"Before, the solves were {100 * doc['solve_share_of_scoring_before']:.0f} % of the scoring. Largest relative "
             f"coefficient difference {rel:.1e}; largest accuracy difference {doc['score_max_abs_diff']:.4f}."]
    OUT.write_text(common.summary_json(doc) + "\n")
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
