"""Search overhead: the CPU a search spends saving each iteration, with each genome encoded and parsed
once and each iteration's front saved as one tensor (today), against the code before: every genome
encoded again wherever it is saved (the population, the archive, the new candidates' files), the whole
archive's front parsed again every iteration, and every front's numbers pickled one by one (the
fronts handed to the save as lists).

A digits search as configs/search/digits.yaml sets it (population 16, 8 children, 2 x 64 grid) with a
near-free synthetic estimator (accuracy saturating with the edge count, plus a fixed pseudo-random
share per genome, so that the archive holds tens of genomes as a real one does), so that what is timed
is the search's own work: selection, mutation, the archive and the run directory. Each variant runs the same seeded search for
``--iterations``; the variants alternate over ``--repeats`` runs, medians. Writes
``benchmarks/results/search_overhead.json`` and ``.md``.

    python -m benchmarks.search_overhead [--iterations 150] [--repeats 3]
"""
from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
import zlib

import numpy as np
import torch

from benchmarks import common
from evolution.data import DigitsDataModule
from evolution.estimators import Estimate
from evolution.search import Search, SearchSettings


class Synthetic:
    """Accuracy 0.9 (1 - exp(-edges / 300)) plus up to 0.08 fixed per genome (its edges' checksum)."""

    def estimate(self, genomes, parents=None) -> list[Estimate]:
        return [Estimate(0.9 * (1 - math.exp(-g.n_edges / 300)) + 0.08 * (zlib.crc32(g.edges.tobytes()) / 2**32), 0.0)
                for g in genomes]


def run(iterations: int, cached: bool) -> dict:
    """One seeded search; CPU-seconds of its saves and of the whole run, per iteration."""
    data = DigitsDataModule(seed=0, batch_size=64)
    with tempfile.TemporaryDirectory() as tmp:
        s = SearchSettings(run_dir=tmp, iterations=iterations, population=16, children=8, levels=2, width=64,
                           density=0.2, init=("random", "mlp:32", "random", "mlp:16"), progress=False)
        search = Search(s, data, Synthetic())
        save, spent, lists = search._save, [0.0], []

        def timed(cands):
            fronts = search.fronts
            if not cached:  # the code before: every genome encoded, every front genome parsed, fronts as lists
                search._genome_json = lambda c: c.genome.to_json()
                search.files._sizes.clear()
                lists.append(fronts[-1].tolist())  # as the code before kept them: the newest converted once
                search.fronts = lists
            start = time.process_time()
            save(cands)
            spent[0] += time.process_time() - start
            search.fronts = fronts

        search._save = timed
        start = time.process_time()
        search.run()
        total = time.process_time() - start
        return {"save_ms": 1e3 * spent[0] / (iterations + 1), "total_ms": 1e3 * total / (iterations + 1),
                "archive": len(search.archive), "hv": search.hv[-1]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    run(5, cached=True)  # warm-up: imports and first-use costs land in neither variant
    rows: dict[str, list[dict]] = {"today": [], "before": []}
    for _ in range(args.repeats):  # alternate, so a slower stretch of the machine hits both
        rows["before"].append(run(args.iterations, cached=False))
        rows["today"].append(run(args.iterations, cached=True))
    med = {k: {m: float(np.median([r[m] for r in v])) for m in ("save_ms", "total_ms")} for k, v in rows.items()}
    same = len({(r["archive"], round(r["hv"], 12)) for v in rows.values() for r in v}) == 1
    old, new = med["before"], med["today"]
    summary = {"script": "benchmarks/search_overhead.py", "load_average_at_start": load,
               "iterations": args.iterations, "repeats": args.repeats, "same_search": same,
               "runs": {k: [{m: r[m] for m in ("save_ms", "total_ms")} for r in v] for k, v in rows.items()},
               "save_ms_per_iteration": med, "save_speedup": old["save_ms"] / new["save_ms"],
               "iteration_speedup": old["total_ms"] / new["total_ms"]}
    lines = ["# search_overhead", "",
             "Made by `python -m benchmarks.search_overhead` (`benchmarks/results/search_overhead.json`): a digits "
             f"search (population 16, 8 children, 2 x 64 grid, a near-free synthetic estimator), {args.iterations} "
             f"iterations, medians of {args.repeats} alternating runs, CPU milliseconds per iteration. Today: each "
             "genome encoded and parsed once, each front saved as one tensor; before: every genome encoded wherever it "
             "is saved, the front's genomes parsed and every front's numbers pickled one by one at every save. "
             "The whole iteration's ratio holds for this near-free estimator only.", "",
             "| variant | saving | whole iteration |", "|---|---|---|"]
    lines += [f"| {k} | {v['save_ms']:.2f} | {v['total_ms']:.2f} |" for k, v in med.items()]
    lines += ["", f"Saving {summary['save_speedup']:.2f}x faster (`save_speedup`), the whole iteration "
              f"{summary['iteration_speedup']:.2f}x (`iteration_speedup`); both variants ran the same search: {same} "
              "(`same_search`)."]
    common.write_results("search_overhead", summary, page="\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
