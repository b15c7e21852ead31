"""Retraining from a supernet's inherited weights on mnist-t10k, beside retraining from scratch.

The supernet ``ranking.py`` trains (uniform sampler, 1,500 steps, the 3 x 256 grid of the ranking
sets) starts each genome of ``predicted_weights.py``'s initializer sections
(``SupernetEstimator.initialize``: its inherited weights, hidden levels at the init's scale), once
as trained and once after 1,000 population-guided steps on the set's genomes (lr 1e-2, cosine, as
``ranking.py``'s ``+population`` and a search with ``update_steps`` train it on the population that
``verify --init estimator`` then retrains). Per genome: the epochs to reach the from-scratch final
validation accuracy at a constant rate, and, as verify retrains (cosine to zero), 5 epochs from the
inherited weights against 10 from scratch, with 5 from scratch as the control. The from-scratch runs
are measured here, side by side (the same genomes, seeds and data as ``predicted_weights.py``, whose
hypernet figures the summary repeats for comparison).

Writes ``benchmarks/results/inherited_init.json``.

    python -m benchmarks.inherited_init [--steps 1500] [--update-steps 1000] [--genomes 10] [--epochs 10]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from evolution.genome import Genome

from benchmarks import common, predicted_weights, ranking, ranking_sets

OUT = common.RESULTS / "inherited_init.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500, help="supernet training steps (as ranking.py)")
    ap.add_argument("--update-steps", type=int, default=1000, help="population-guided steps on each set")
    ap.add_argument("--update-lr", type=float, default=1e-2, help="their peak learning rate (as ranking.py)")
    ap.add_argument("--genomes", type=int, default=10, help="genomes per section")
    ap.add_argument("--epochs", type=int, default=10, help="from-scratch epochs")
    common.add_data_root(ap)
    args = ap.parse_args()
    if args.update_steps < 1:
        ap.error("--update-steps must be at least 1 (the sections without an update are always measured)")
    from oneshot.estimator import SupernetEstimator

    torch.set_num_threads(min(torch.get_num_threads(), 2))
    data = ranking_sets.data_module(args.data_root)
    data.setup("fit")
    ckpt, train_s = ranking.supernet_variant("uniform", data, args.steps, "uniform", False)
    print(f"supernet (uniform): {args.steps} steps in {train_s:.0f} s", flush=True)
    doc = ranking_sets.load()
    out: dict = {"supernet_steps": args.steps, "supernet_train_seconds": train_s, "update_steps": args.update_steps,
                 "update_lr": args.update_lr}
    for name in ("broad", "lineage"):
        for steps in (0, args.update_steps):
            est = SupernetEstimator(data, str(ckpt), update_steps=steps, lr=args.update_lr)
            start = time.perf_counter()
            if steps:
                est.update([Genome.from_dict(e["genome"]) for e in ranking_sets.with_truth(doc, name)])
            seconds = time.perf_counter() - start
            key = f"{name}_updated" if steps else name
            out[key], _, _ = predicted_weights.initializer(
                doc, name, data, est, args.genomes, args.epochs,
                f": supernet's inherited weights, {steps} update steps on the set ({seconds:.0f} s)")
            out[key].update(update_steps=steps, update_seconds=seconds)

    hyper = json.loads(predicted_weights.OUT.read_text()) if predicted_weights.OUT.is_file() else {}
    half = args.epochs // 2
    print(f"\nsummary: genomes (of {args.genomes}) that reach the from-scratch final within {half} epochs at a constant "
          f"rate; as verify retrains, {half} epochs reaching the {args.epochs}-epoch from-scratch final")
    print(f"{'set':>8} {'start':>40} {'constant':>9} {'cosine':>7} {'cosine, scratch':>16} {'start worth (epochs, median)':>29}")
    rows = [(n, f"supernet, {s} update steps", out[f"{n}_updated" if s else n])
            for n in ("broad", "lineage") for s in (0, args.update_steps)]
    hyper_keys = {("broad", "hypernet"): "initializer", ("broad", "hypernet, updated"): "initializer_broad_updated",
                  ("lineage", "hypernet"): "initializer_lineage",
                  ("lineage", "hypernet, updated"): "initializer_lineage_updated"}
    rows += [(n, f"{label} (predicted_weights.json)", hyper[k]) for (n, label), k in hyper_keys.items() if k in hyper]
    for n, label, sec in rows:
        cb = sec["cosine_half_budget"]
        worth = np.median([r["start_worth_epochs"] for r in sec["genomes"]])
        print(f"{n:>8} {label:>40} {sec['within_half']:>9} {cb['predicted_reached']:>7} {cb['scratch_half_reached']:>16} "
              f"{worth:>29.1f}")
    common.write_results("inherited_init", out)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
