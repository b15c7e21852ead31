"""Kernel benchmark: one 2048x2048 level pair at densities 1..100 %, batch 256.

Times dense ``nn.Linear``, masked-dense, CSR and the automatic choice, forward without grad
(inference) and forward + backward (training), as ratios to dense measured side by side in one
run (methods interleaved per repeat, each timed warm after one untimed call, median of repeats:
this host is noisy), and derives the
density thresholds below which CSR wins. Writes ``benchmarks/results/kernel[_cuda].json``.

    python benchmarks/kernel.py [--repeats 15] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

from evolution.genome import Genome, SearchSpace
from evolution.network import CSR_MAX_DENSITY, Pair, _CSRProduct, _masked_dense, compile, pair_mode

N, BATCH = 2048, 256
DENSITIES = [0.01, 0.02, 0.05, 0.10, 0.20, 0.50, 1.00]


def make_pair(density: float, rng: np.random.Generator) -> Pair:
    """The compiled 2048x2048 input->hidden pair of a genome at ``density`` (uniform edges)."""
    space = SearchSpace((N,), 1, levels=1, width=N)
    mask = rng.random((N, N)) < density
    mask[np.arange(N), rng.integers(0, N, N)] = True  # every input used, so no input is dropped
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
            "masked": lambda: x @ _masked_dense(p, w),
            "csr": lambda: _CSRProduct.apply(x, w[p.csr_edges], p),
        }
        # "auto" runs whichever kernel sparse_forward would pick for this pair in each regime.
        pick = {g: pair_mode(p, g, torch.float32, device) for g in (False, True)}
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
        med["auto_infer"] = med[f"{kind[pick[False]]}_infer"]
        med["auto_train"] = med[f"{kind[pick[True]]}_train"]
        rows.append({"density": density, "edges": len(p.edges), "auto_infer_kernel": pick[False],
                     "auto_train_kernel": pick[True], "seconds": med,
                     **{f"{k}_ratio": med[k] / med[f"dense_{k.split('_')[1]}"] for k in med if not k.startswith("dense")}})
    return {"rows": rows}


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
        "thresholds_in_use": dict(CSR_MAX_DENSITY.get(args.device, {})),
    }
    print(f"auto training worst ratio to dense: {summary['auto_max_ratio']:.2f} (target <= 1.3)")
    print(f"auto inference speed-up over dense: {summary['inference_speedup_2pct']:.2f}x at 2 % (target >= 3), "
          f"{summary['inference_speedup_5pct']:.2f}x at 5 % (target >= 1.5)")
    print(f"derived CSR thresholds: infer {summary['derived_threshold_infer']}, train {summary['derived_threshold_train']} "
          f"(in use: {summary['thresholds_in_use']})")
    out = Path(__file__).parent / "results" / ("kernel.json" if args.device == "cpu" else f"kernel_{args.device}.json")
    out.parent.mkdir(exist_ok=True)
    meta = {"device": args.device, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "machine": platform.machine(), "batch": BATCH, "n": N, "repeats": args.repeats}
    out.write_text(json.dumps({**summary, **meta, **result}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
