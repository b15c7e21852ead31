"""Kernel benchmark: one 2048x2048 level pair at densities 1..100 %, batch 256, then the grid's shapes.

Times dense ``nn.Linear``, masked-dense, CSR and the automatic choice, forward without grad
(inference) and forward + backward (training), as ratios to dense measured side by side in one
run (methods interleaved per repeat, each timed warm after one untimed call, median of repeats:
this host is noisy), and derives the
density thresholds below which CSR wins. Then "shapes": the pairs the mnist grid compiles to (784
inputs or 256 neurons into 64-512 targets) at 1-20 % density, training at batch 128 and inference
at batch 2,000 (an estimator's validation set): CSR against masked-dense, and how much slower than
the faster of the two the automatic choice is (its "regret"), beside the earlier rule that looked
at density only. Writes ``benchmarks/results/kernel[_cuda].{json,md,png}``.

    python -m benchmarks.kernel [--repeats 15] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import math
import platform
import time

import numpy as np
import torch

from benchmarks import common, figures
from evolution import network
from evolution.genome import Genome, SearchSpace
from evolution.network import (CSR_MIN_ENTRIES, CSR_RULE, LARGE_BATCH, Pair, SparseNet, CSRProduct, masked_dense,
                               compile, pair_mode)

N, BATCH = 2048, 256
DENSITIES = [0.01, 0.02, 0.05, 0.10, 0.20, 0.50, 1.00]
SHAPES = [(784, 64), (784, 128), (784, 256), (256, 128), (256, 256), (1024, 512), (2048, 2048)]
SHAPE_DENSITIES = [0.01, 0.02, 0.05, 0.10, 0.20]
REGIMES = {"train": 128, "infer": 2000}  # batch of a training step, of an estimator's validation pass


def make_pair(density: float, rng: np.random.Generator, n_src: int = N, n_dst: int = N) -> Pair:
    """The compiled ``n_src`` x ``n_dst`` input->hidden pair of a genome at ``density`` (uniform edges)."""
    space = SearchSpace((n_src,), 1, levels=1, width=n_dst)
    mask = rng.random((n_src, n_dst)) < density
    mask[np.arange(n_src), rng.integers(0, n_dst, n_src)] = True  # every input used, so no input is dropped
    src, dst = np.nonzero(mask)
    genome = Genome(space, space.level_slots(1), np.stack([src, space.hidden_id(1, dst)], 1))
    return compile(genome).pairs_into[0][0]


def timed(fn, sync) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def run(repeats: int, device: str) -> dict:
    rng = np.random.default_rng(0)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    x = torch.randn(BATCH, N, device=device, requires_grad=True)
    linear = torch.nn.Linear(N, N, bias=False, device=device)
    rows = []
    for density in DENSITIES:
        p = make_pair(density, rng).to(device)
        w = torch.randn(len(p.edges), device=device, requires_grad=True)
        kernels = {
            "dense": lambda: linear(x),
            "masked": lambda: x @ masked_dense(p, w),
            "csr": lambda: CSRProduct.apply(x, w[p.csr_edges], p),
        }
        # "auto" runs whichever kernel sparse_forward would pick for this pair at this batch.
        pick = pair_mode(p, BATCH, torch.float32, device)
        times: dict[str, list[float]] = {f"{k}_{m}": [] for k in kernels for m in ("infer", "train")}
        for r in range(repeats + 1):
            for name, fn in kernels.items():
                # One untimed call before each timed one: a network runs the same kernel step after
                # step, so time it warm, not right after another kernel churned the caches.
                with torch.no_grad():
                    fn()
                    t_inf = timed(fn, sync)
                fn().sum().backward()
                t_train = timed(lambda: fn().sum().backward(), sync)
                if r:  # the first round warms up
                    times[f"{name}_infer"].append(t_inf)
                    times[f"{name}_train"].append(t_train)
        med = {k: float(np.median(v)) for k, v in times.items()}
        kind = {"csr": "csr", "dense": "masked"}
        med["auto_infer"] = med[f"{kind[pick]}_infer"]
        med["auto_train"] = med[f"{kind[pick]}_train"]
        rows.append({"density": density, "edges": len(p.edges), "auto_kernel": pick,
                     "seconds": med,
                     **{f"{k}_ratio": med[k] / med[f"dense_{k.split('_')[1]}"] for k in med if not k.startswith("dense")}})
    return {"rows": rows}


def density_only(p: Pair, batch: int, dtype: torch.dtype, device: str = "cpu") -> str:
    """The rule the automatic choice replaced: CSR at <= 20 % density on the CPU, whatever the shape."""
    return "csr" if device == "cpu" and p.n_src * p.n_dst >= CSR_MIN_ENTRIES and p.density <= 0.2 else "dense"


def run_shapes(repeats: int, device: str) -> list[dict]:
    """CSR vs masked-dense on the grid's pair shapes; the regret of the automatic choice and of the
    density-only rule it replaced (CSR at <= 20 % whatever the shape), from the same timings."""
    rng = np.random.default_rng(1)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows = []
    for n_src, n_dst in SHAPES:
        for density in SHAPE_DENSITIES:
            p = make_pair(density, rng, n_src, n_dst).to(device)
            w = torch.randn(len(p.edges), device=device, requires_grad=True)
            for regime, batch in REGIMES.items():
                x = torch.randn(batch, n_src, device=device, requires_grad=regime == "train")
                kernels = {"masked": lambda: x @ masked_dense(p, w), "csr": lambda: CSRProduct.apply(x, w[p.csr_edges], p)}
                times: dict[str, list[float]] = {k: [] for k in kernels}
                for r in range(repeats + 1):
                    for name, fn in kernels.items():
                        if regime == "train":
                            fn().sum().backward()
                            t = timed(lambda: fn().sum().backward(), sync)
                        else:
                            with torch.no_grad():
                                fn()
                                t = timed(fn, sync)
                        if r:
                            times[name].append(t)
                med = {k: float(np.median(v)) for k, v in times.items()}
                best = min(med.values())
                kind = {"csr": "csr", "dense": "masked"}
                auto = kind[pair_mode(p, batch, torch.float32, device)]
                rows.append({"n_src": n_src, "n_dst": n_dst, "density": round(p.density, 4), "regime": regime,
                             "batch": batch, "seconds": med, "csr_ratio": med["csr"] / med["masked"], "auto": auto,
                             "auto_regret": med[auto] / best,
                             "density_only_regret": med[kind[density_only(p, batch, torch.float32, device)]] / best})
    return rows


def run_genomes(repeats: int, device: str) -> dict:
    """Milliseconds per genome of the broad ranking set: a no-grad pass over 2,000 rows and a training
    step (forward + backward into the edge vector) at batch 128, per kernel rule, rules interleaved."""
    genomes = [Genome.from_dict(e["genome"]) for e in common.load_ranking_sets()["broad"]]
    nets = [SparseNet(g, torch.Generator().manual_seed(i)).to(device) for i, g in enumerate(genomes)]
    x = torch.rand(REGIMES["infer"], genomes[0].space.n_inputs, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def one_class(p: Pair, batch: int, dtype: torch.dtype, device: str = "cpu") -> str:
        return pair_mode(p, 1, dtype, device)  # the small-batch limits at every batch

    rules = {"auto": network.pair_mode, "small_batch_rule": one_class, "density_only": density_only,
             "dense": lambda *a, **k: "dense"}
    times: dict[str, list[float]] = {f"{r}_{m}": [] for r in rules for m in REGIMES}

    def infer() -> None:
        with torch.no_grad():
            for net in nets:
                net(x)

    def train() -> None:
        for net in nets:
            net(x[:REGIMES["train"]]).logsumexp(1).sum().backward()

    try:
        for r in range(repeats + 1):
            for name, rule in rules.items():
                network.pair_mode = rule
                t_inf, t_train = timed(infer, sync), timed(train, sync)
                if r:
                    times[f"{name}_infer"].append(1e3 * t_inf / len(nets))
                    times[f"{name}_train"].append(1e3 * t_train / len(nets))
    finally:
        network.pair_mode = rules["auto"]
    return {k: float(np.median(v)) for k, v in times.items()}


def threshold(rows: list[dict], regime: str) -> float:
    """Largest density at which CSR beats masked-dense, interpolated in log density to the crossing."""
    best = 0.0
    for a, b in zip(rows, rows[1:]):
        ra = a["seconds"][f"csr_{regime}"] / a["seconds"][f"masked_{regime}"]
        rb = b["seconds"][f"csr_{regime}"] / b["seconds"][f"masked_{regime}"]
        if ra < 1 <= rb:
            t = math.log(ra) / (math.log(ra) - math.log(rb))
            best = math.exp(math.log(a["density"]) + t * (math.log(b["density"]) - math.log(a["density"])))
        elif ra < 1 and rb < 1:
            best = b["density"]
    return round(best, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args()
    result = run(args.repeats, args.device)
    rows = result["rows"]
    print(f"{N}x{N} pair, batch {BATCH}, {args.device}, {torch.get_num_threads()} threads, median of {args.repeats}")
    print("times as ratios to dense nn.Linear (lower is faster)")
    print(f"{'density':>8} {'edges':>8} | {'infer: masked':>13} {'csr':>6} {'auto':>6} | {'train: masked':>13} {'csr':>6} {'auto':>6} | dense ms inf/train")
    for r in rows:
        s = r["seconds"]
        print(f"{r['density']:>8.0%} {r['edges']:>8} | {r['masked_infer_ratio']:>13.2f} {r['csr_infer_ratio']:>6.2f} "
              f"{r['auto_infer_ratio']:>6.2f} | {r['masked_train_ratio']:>13.2f} {r['csr_train_ratio']:>6.2f} "
              f"{r['auto_train_ratio']:>6.2f} | {1e3 * s['dense_infer']:.1f} / {1e3 * s['dense_train']:.1f}")
    by = {r["density"]: r for r in rows}
    summary = {
        "auto_max_ratio": max(r["auto_train_ratio"] for r in rows),
        "inference_speedup_2pct": 1 / by[0.02]["auto_infer_ratio"],
        "inference_speedup_5pct": 1 / by[0.05]["auto_infer_ratio"],
        "derived_threshold_infer": threshold(rows, "infer"),
        "derived_threshold_train": threshold(rows, "train"),
        "rule_in_use": {"rule": CSR_RULE.get(args.device), "large_batch": LARGE_BATCH},
    }
    print(f"auto training worst ratio to dense: {summary['auto_max_ratio']:.2f} (target <= 1.3)")
    print(f"auto inference speed-up over dense: {summary['inference_speedup_2pct']:.2f}x at 2 % (target >= 3), "
          f"{summary['inference_speedup_5pct']:.2f}x at 5 % (target >= 1.5)")
    print(f"derived CSR thresholds: infer {summary['derived_threshold_infer']}, train {summary['derived_threshold_train']} "
          f"(in use: {summary['rule_in_use']})")
    shapes = run_shapes(max(5, args.repeats // 2), args.device)
    print(f"\ngrid shapes: CSR time / masked-dense time (< 1: CSR faster); train = batch {REGIMES['train']} "
          f"forward + backward, infer = batch {REGIMES['infer']} forward")
    print(f"{'pair':>10} {'regime':>6} " + " ".join(f"{d:>6.0%}" for d in SHAPE_DENSITIES))
    for (n_src, n_dst) in SHAPES:
        for regime in REGIMES:
            cells = [r for r in shapes if (r["n_src"], r["n_dst"], r["regime"]) == (n_src, n_dst, regime)]
            print(f"{f'{n_src}x{n_dst}':>10} {regime:>6} " + " ".join(f"{r['csr_ratio']:>5.2f}{'*' if r['auto'] == 'csr' else ' '}"
                                                                  for r in cells))
    print("(* = the automatic choice runs CSR)")
    for key in ("auto_regret", "density_only_regret"):
        regret = np.array([r[key] for r in shapes])
        summary[f"shapes_{key}_mean"], summary[f"shapes_{key}_max"] = float(regret.mean()), float(regret.max())
    print(f"time over the faster kernel, mean / worst over {len(shapes)} cells: automatic choice "
          f"{summary['shapes_auto_regret_mean']:.2f} / {summary['shapes_auto_regret_max']:.2f}; density-only rule "
          f"{summary['shapes_density_only_regret_mean']:.2f} / {summary['shapes_density_only_regret_max']:.2f}")
    result["shapes"] = shapes
    ms = run_genomes(max(3, args.repeats // 3), args.device)
    print(f"\nbroad ranking set end to end, ms per genome (median): validation pass of {REGIMES['infer']} rows | "
          f"training step at {REGIMES['train']}")
    for rule in ("auto", "small_batch_rule", "density_only", "dense"):
        print(f"{rule:>13}: {ms[f'{rule}_infer']:6.2f} | {ms[f'{rule}_train']:5.2f}")
    summary["genomes_ms"] = ms
    summary["genomes_speedup_infer"] = ms["density_only_infer"] / ms["auto_infer"]
    summary["genomes_speedup_train"] = ms["density_only_train"] / ms["auto_train"]
    print(f"automatic choice vs the density-only rule: {summary['genomes_speedup_infer']:.2f}x faster validation "
          f"pass, {summary['genomes_speedup_train']:.2f}x faster training step")
    meta = {"device": args.device, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "machine": platform.machine(), "batch": BATCH, "n": N, "repeats": args.repeats}
    doc = {**summary, **meta, **result}
    name = "kernel" if args.device == "cpu" else f"kernel_{args.device}"
    out = common.write_results(name, doc, page=figures.kernel_page(doc))
    figures.kernel_figure(doc, out.with_suffix(".png"))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
