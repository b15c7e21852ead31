"""Throughput: many genomes per pass (``evolution.batched``) against today's per-genome path, per device.

On the mnist grid (784 inputs, 3 levels x 256, 10 outputs), measured side by side in one process
(variants alternate, medians):

- estimation: 64 genomes (the supernet sampler's ``uniform`` draws, density 0.003-0.3) scored on
  2,000 validation examples with inherited (supernet bank) or predicted (hypernet) weights, output
  level refitted on 2,000 training examples as configs/search/mnist-t10k-{supernet,hypernet}.yaml do:
  genomes per second, per genome vs batched (16 genomes a pass) vs batched with bf16 matmuls (with the
  scores' largest difference from float32);
- training: genome-steps per second of a supernet step (configs/oneshot/mnist-t10k.yaml: sandwich, 4
  genomes, batch 128, LazyAdam) and a hypernet step (configs/hypernet/mnist-t10k.yaml: 8 genomes, batch
  640 with a 512-example readout, Adam); per genome vs batched; the hypernet also against its
  message passing through PyG's ``SAGEConv`` call (today's code before ``hypernet.model.mean_aggregate``),
  and the largest parameter difference after the same steps both ways ("same accuracy after the
  same genome-steps": the same function, up to float rounding);
- how estimate time grows with genome size (1k to ~1M edges, a 3 x 1024 grid) and the peak memory
  of training steps on a 4 x 1024 grid (a fresh process each, so the peak is that of the run).

Headline keys per device (``cpu``; ``cuda`` when torch sees one, else null with the reason):
``estimate_speedup`` (best batched variant over per genome, genomes per second; supernet and hypernet
apart), ``supernet_step_speedup``, ``hypernet_step_speedup``; ``cuda`` adds ``*_steps_per_s_vs_cpu2``.
Writes ``benchmarks/results/throughput.json`` and ``.md``.

    python -m benchmarks.throughput [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import kendalltau

from benchmarks import common
from evolution.batched import concat, stack, stacked_accuracy, stacked_forward
from evolution.genome import SearchSpace
from evolution.network import compile, sparse_forward
from evolution.readout import ridge_readout
from evolution.sampling import GenomeSampler, random_genome
from hypernet import model as hypernet_model
from hypernet.module import HypernetModule, hypernet_loss, predict
from oneshot.module import supernet_loss
from oneshot.optim import LazyAdam
from oneshot.supernet import Supernet

RESULTS = Path(__file__).parent / "results"
MNIST = common.DATA_ROOT / "mnist-t10k"  # --data-root sets it
SPACE = SearchSpace((1, 28, 28), 10, levels=3, width=256)


def mnist_examples(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """4,000 examples: the real MNIST test set when it is here, else random ones of its shape."""
    if (MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        from evolution.data import IDXDataModule

        x, y = IDXDataModule(str(MNIST), seed=0, val_fraction=0.2, test_fraction=0.0).tensors("train")
    else:
        g = torch.Generator().manual_seed(0)
        x, y = torch.rand(4000, 784, generator=g), torch.randint(0, 10, (4000,), generator=g)
    return x[:4000].to(device), y[:4000].to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def alternate(fns: dict, repeats: int, device: torch.device) -> dict[str, float]:
    """Median seconds of each function, calls alternating (order reversed every other round)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(repeats + 1):
        for k in (list(fns) if r % 2 else list(fns)[::-1]):
            _sync(device)
            start = time.perf_counter()
            fns[k]()
            _sync(device)
            if r:  # the first round warms up
                times[k].append(time.perf_counter() - start)
    return {k: float(np.median(v)) for k, v in times.items()}


def estimation(device: torch.device, repeats: int) -> dict:
    x, y = mnist_examples(device)
    fit, val = (x[:2000], y[:2000]), (x[2000:], y[2000:])
    genomes = GenomeSampler(SPACE, "uniform", density=(0.003, 0.3)).sample(np.random.default_rng(0), 64)
    sup = Supernet(SPACE, torch.Generator().manual_seed(0)).to(device)
    torch.manual_seed(0)
    hyper = HypernetModule((1, 28, 28), 10, levels=3, width=256, bands=5).model.to(device).eval()
    out = {"genomes": len(genomes), "median_edges": int(np.median([g.n_edges for g in genomes])), "val": 2000,
           "readout": 2000}
    for kind in ("supernet", "hypernet"):
        @torch.no_grad()
        def weights(gs):
            return [sup.weights_for(g) for g in gs] if kind == "supernet" else predict(hyper, gs, device)

        @torch.no_grad()
        def per_genome():
            scores = []
            for g, w in zip(genomes, [w for i in range(0, 64, 16) for w in weights(genomes[i:i + 16])]):
                plan = sup.plan_for(g) if kind == "supernet" else compile(g).to(device)
                w = ridge_readout(plan, w, *fit)
                scores.append(float((sparse_forward(plan, w, val[0]).argmax(1) == val[1]).float().mean()))
            return scores

        # as SupernetEstimator does: genomes of like depth and size share a pass (less padding)
        order = sorted(range(64), key=lambda i: (len(genomes[i].levels_present()), len(genomes[i].hidden)))

        def batched(dtype=None, compiled=False):
            @torch.no_grad()
            def run():
                scores = np.zeros(64)
                for i in range(0, 64, 16):
                    gs = [genomes[j] for j in order[i:i + 16]]
                    plans = [sup.plan_for(g) if kind == "supernet" else compile(g).to(device) for g in gs]
                    s = stack(gs).to(device)
                    w = sup.stacked_weights(gs) if kind == "supernet" else concat(weights(gs))
                    scores[order[i:i + 16]] = stacked_accuracy(s, plans, w, *val, fit, dtype=dtype,
                                                                      compiled=compiled).cpu().numpy()
                return scores
            return run

        fns = {"per_genome": per_genome, "batched": batched(), "batched_bf16": batched(torch.bfloat16),
               "batched_compiled": batched(compiled=True), "batched_compiled_bf16": batched(torch.bfloat16, True)}
        ref = np.array(per_genome())
        diffs = {k: np.array(f()) - ref for k, f in fns.items() if k != "per_genome"}
        sec = alternate(fns, repeats, device)
        rate = {k: len(genomes) / v for k, v in sec.items()}
        out[kind] = {"genomes_per_s": rate, "speedup": {k: rate[k] / rate["per_genome"] for k in rate},
                     "score_max_abs_diff": {k: float(np.abs(d).max()) for k, d in diffs.items()},
                     "kendall_tau_vs_float32": {k: float(kendalltau(ref, ref + d)[0]) for k, d in diffs.items()}}
    return out


def _sage_call(self, h, along, against):
    """Today's DirectedLayer before mean_aggregate: PyG's SAGEConv call (its backward sorts)."""
    return self.norm(h + F.gelu(self.along(h, along) + self.against(h, against)))


def training(device: torch.device, repeats: int) -> dict:
    x, y = mnist_examples(device)
    rng = np.random.default_rng(1)
    out = {}
    # supernet: sandwich, 4 genomes, batch 128 (configs/oneshot/mnist-t10k.yaml)
    sampler = GenomeSampler(SPACE, "sandwich", density=(0.003, 0.3))
    draws = [sampler.sample(rng, 4) for _ in range(repeats + 1)]
    banks = {k: Supernet(SPACE, torch.Generator().manual_seed(0)).to(device)
             for k in ("per_genome", "batched", "batched_compiled")}
    opts = {k: LazyAdam(list(b.parameters()), lr=3e-3, rows=b.touched_rows) for k, b in banks.items()}
    it = {k: iter(draws * 2) for k in banks}

    def sup_step(k):
        def run():
            gs = next(it[k])
            if k == "batched_compiled":
                logits = stacked_forward(stack(gs), banks[k].stacked_weights(gs), x[:128], compiled=True)
                loss = F.cross_entropy(logits.flatten(0, 1), y[:128].repeat(len(gs)))
            else:
                loss = supernet_loss(banks[k], gs, x[:128], y[:128], batched=k == "batched")
            opts[k].zero_grad()
            loss.backward()
            opts[k].step()
        return run

    sec = alternate({k: sup_step(k) for k in banks}, repeats, device)
    diff = max(float((p - q).detach().abs().max()) for p, q in zip(banks["per_genome"].parameters(), banks["batched"].parameters()))
    out["supernet"] = {"genome_steps_per_s": {k: 4 / v for k, v in sec.items()},
                       "speedup": {k: sec["per_genome"] / v for k, v in sec.items()},
                       "param_max_abs_diff_after_same_steps": diff}
    # hypernet: 8 genomes, 640 examples with a 512-example readout (configs/hypernet/mnist-t10k.yaml)
    modules = {}
    for k in ("sage_call", "per_genome", "batched"):
        modules[k] = HypernetModule((1, 28, 28), 10, levels=3, width=256, density=(0.003, 0.3), genomes_per_step=8,
                                    bands=5, readout=512, seed=0).to(device)
    hopts = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, m in modules.items()}
    hdraws = [modules["batched"].sampler.sample(rng, 8) for _ in range(repeats + 1)]
    hit = {k: iter(hdraws * 2) for k in modules}
    mean_layer = hypernet_model.DirectedLayer.forward

    def hyper_step(k):
        def run():
            hypernet_model.DirectedLayer.forward = _sage_call if k == "sage_call" else mean_layer
            try:
                m = modules[k]
                loss = hypernet_loss(m.model, next(hit[k]), x[:640], y[:640], 512, 1.0, m.readout_scale, k == "batched")
                hopts[k].zero_grad()
                loss.backward()
                hopts[k].step()
            finally:
                hypernet_model.DirectedLayer.forward = mean_layer
        return run

    sec = alternate({k: hyper_step(k) for k in modules}, repeats, device)
    diff = max(float((p - q).detach().abs().max()) for p, q in zip(modules["sage_call"].parameters(),
                                                          modules["batched"].parameters()))
    out["hypernet"] = {"genome_steps_per_s": {k: 8 / v for k, v in sec.items()},
                       "speedup_vs_sage_call": {k: sec["sage_call"] / v for k, v in sec.items()},
                       "param_max_abs_diff_after_same_steps": diff}
    return out


def growth(device: torch.device) -> list[dict]:
    """Seconds to score one genome (2,000 examples, per-genome kernel) against its edge count, on a
    4 x 1024 grid."""
    space = SearchSpace((1, 28, 28), 10, levels=4, width=1024)
    sup = Supernet(space, torch.Generator().manual_seed(0)).to(device)
    x = mnist_examples(device)[0][:2000]
    rows = []
    for density in (0.002, 0.008, 0.06, 0.55):  # about 1k, 10k, 100k and 1M edges
        g = random_genome(space, np.random.default_rng(0), density=density)
        plan = sup.plan_for(g)
        with torch.no_grad():
            sec = alternate({"score": lambda: sparse_forward(plan, sup.weights_for(g), x)}, 3, device)["score"]
        rows.append({"edges": int(g.n_edges), "seconds": sec})
    return rows


def grid_memory(levels: int, width: int, device: str) -> dict:
    """Peak memory of 5 supernet and 5 hypernet steps on the largest genome of a levels x width grid
    (run in a fresh process: ``--grid levels width``)."""
    dev = torch.device(device)
    space = SearchSpace((1, 28, 28), 10, levels=levels, width=width)
    x, y = torch.rand(128, 784, device=dev), torch.randint(0, 10, (128,), device=dev)
    sup = Supernet(space, torch.Generator().manual_seed(0)).to(dev)
    opt = LazyAdam(list(sup.parameters()), lr=3e-3, rows=sup.touched_rows)
    largest = GenomeSampler(space, "sandwich").largest()
    start = time.perf_counter()
    for _ in range(5):
        loss = supernet_loss(sup, [largest], x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    sup_s = (time.perf_counter() - start) / 5
    hyper = HypernetModule((1, 28, 28), 10, levels=levels, width=width).to(dev)
    hopt = torch.optim.Adam(hyper.parameters(), lr=1e-3)
    start = time.perf_counter()
    for _ in range(2):
        loss = hypernet_loss(hyper.model, [largest], x, y)
        hopt.zero_grad()
        loss.backward()
        hopt.step()
    peak = (torch.cuda.max_memory_allocated() if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"levels": levels, "width": width, "edges": int(largest.n_edges), "peak_gib": peak / 2**30,
            "supernet_step_s": sup_s, "hypernet_step_s": (time.perf_counter() - start) / 2, "trains": True}


def gemm_bound(device: torch.device) -> dict:
    """Why batching cannot speed up a compute-bound scorer: the per-genome path's share of time in
    matmuls and the rate they run at, against one large GEMM's rate (float32 and bf16)."""
    from torch.profiler import ProfilerActivity, profile

    from evolution.network import pair_mode

    x = mnist_examples(device)[0][:2000]
    genomes = GenomeSampler(SPACE, "uniform", density=(0.003, 0.3)).sample(np.random.default_rng(0), 64)
    sup = Supernet(SPACE, torch.Generator().manual_seed(0)).to(device)
    plans = [sup.plan_for(g) for g in genomes]
    dense = sum(2 * len(x) * (p.n_src * p.n_dst if pair_mode(p, len(x), x.dtype, device.type) == "dense" else len(p.edges))
                for plan in plans for ps in plan.pairs_into for p in ps)
    edges = sum(2 * len(x) * g.n_edges for g in genomes)

    @torch.no_grad()
    def score():
        for g, plan in zip(genomes, plans):
            sparse_forward(plan, sup.weights_for(g), x).argmax(1)

    score()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        score()
    ops = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    total = sum(ops.values())
    top = dict(sorted(((k, v / total) for k, v in ops.items()), key=lambda kv: -kv[1])[:6])
    wall = alternate({"score": score}, 3, device)["score"]
    peak = {}
    for name, dt in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        a, b = torch.rand(2000, 784, dtype=dt, device=device), torch.rand(784, 4096, dtype=dt, device=device)
        sec = alternate({"mm": lambda: a @ b}, 5, device)["mm"]
        peak[name] = 2 * 2000 * 784 * 4096 / sec / 1e9
    mm = ops.get("aten::mm", 0.0) / 1e6  # profiler times are in microseconds
    return {"dense_gflop": dense / 1e9, "edge_gflop": edges / 1e9, "seconds": wall, "op_share": top,
            "mm_gflops": dense / 1e9 / mm if mm else None, "peak_gemm_gflops": peak}


def device_column(device: torch.device, repeats: int) -> dict:
    est, train = estimation(device, repeats), training(device, repeats)
    col = {
        "estimate_speedup": {k: max(v for n, v in est[k]["speedup"].items() if n != "per_genome")
                             for k in ("supernet", "hypernet")},
        "supernet_step_speedup": max(v for k, v in train["supernet"]["speedup"].items() if k != "per_genome"),
        "hypernet_step_speedup": train["hypernet"]["speedup_vs_sage_call"]["batched"],  # batched over today's
        "hypernet_step_speedup_best": max(train["hypernet"]["speedup_vs_sage_call"].values()),
        "estimation": est, "training": train, "growth": growth(device), "threads": torch.get_num_threads(),
        "per_genome_profile": gemm_bound(device) if device.type == "cpu" else None,
    }
    # as a module from the repository root, as the benchmark itself runs (a bare script path cannot import benchmarks)
    grid = subprocess.run([sys.executable, "-m", "benchmarks.throughput", "--grid", "4", "1024", str(device)],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    col["grid_4x1024"] = json.loads(grid.stdout.splitlines()[-1]) if grid.returncode == 0 else {
        "trains": False, "error": grid.stderr.strip().splitlines()[-1] if grid.stderr.strip() else f"exit {grid.returncode}"}
    return col


def _load(result: dict) -> str:
    load = result.get("load_average_at_start")
    return "not recorded" if load is None else f"{load:.1f}"


def markdown(result: dict) -> str:
    """The results page: one table per device, figures from ``throughput.json``."""
    lines = ["# Throughput: many genomes per pass", "",
             "`python -m benchmarks.throughput` (`benchmarks/results/throughput.json`); variants measured side by side "
             "in one process, medians. Speedups over today's per-genome path. The machine's 1-minute load average "
             f"when the run began: {_load(result)} (other jobs slow the absolute rates; the ratios are side by side).", ""]
    for dev in ("cpu", "cuda"):
        col = result.get(dev)
        if col is None:
            lines += [f"## {dev}: not measured", "", result.get(f"{dev}_reason", ""), ""]
            continue
        est, train = col["estimation"], col["training"]
        lines += [f"## {dev} ({col['threads']} threads)", "", "| what | variant | per second | over per genome |",
                  "| --- | --- | --- | --- |"]
        rows = [(f"estimation, {k} weights (genomes)", est[k]["genomes_per_s"]) for k in ("supernet", "hypernet")]
        rows += [(f"{k} training (genome-steps)", train[k]["genome_steps_per_s"]) for k in ("supernet", "hypernet")]
        for what, rates in rows:
            base = rates.get("sage_call", rates["per_genome"])
            lines += [f"| {what} | {v} | {r:.1f} | {r / base:.2f}x |" for v, r in rates.items()]
        lines += ["", f"Headline: estimate_speedup {col['estimate_speedup']['supernet']:.2f}x (supernet) / "
                  f"{col['estimate_speedup']['hypernet']:.2f}x (hypernet) against the goal 3x; supernet_step_speedup "
                  f"{col['supernet_step_speedup']:.2f}x and hypernet_step_speedup {col['hypernet_step_speedup']:.2f}x "
                  f"(best hypernet variant {col['hypernet_step_speedup_best']:.2f}x) against 2x. The hypernet's "
                  "'today' is its message passing through PyG's SAGEConv call (sage_call)."]
        lines += ["", "bf16 scores against float32 (largest accuracy difference, Kendall tau): " + ", ".join(
            f"{k} {est[k]['score_max_abs_diff']['batched_bf16']:.4f} / {est[k]['kendall_tau_vs_float32']['batched_bf16']:.3f}"
            for k in ("supernet", "hypernet")),
            "", "After the same steps both ways, largest parameter difference: supernet "
            f"{train['supernet']['param_max_abs_diff_after_same_steps']:.1e}, hypernet "
            f"{train['hypernet']['param_max_abs_diff_after_same_steps']:.1e}.", "",
            "| edges | seconds to score 2,000 examples |", "| --- | --- |"]
        lines += [f"| {r['edges']:,} | {r['seconds']:.4f} |" for r in col["growth"]]
        pr = col.get("per_genome_profile")
        if pr:
            lines += ["", f"Where today's per-genome scoring of the 64 genomes spends its time (no readout, {pr['seconds']:.2f} s): "
                      + ", ".join(f"{k} {100 * v:.0f} %" for k, v in pr["op_share"].items())
                      + f". Its matmuls do {pr['dense_gflop']:.1f} GFLOP (the edges alone: {pr['edge_gflop']:.2f}) at "
                      f"{pr['mm_gflops'] or 0:.0f} GFLOP/s, where one large GEMM runs at "
                      f"{pr['peak_gemm_gflops']['float32']:.0f} (float32) / {pr['peak_gemm_gflops']['bfloat16']:.0f} (bf16) GFLOP/s."]
        if dev == "cpu":
            lines += ["", "Reading: on the CPU scoring and training are bound by their matmuls and the passes over "
                      "activations, not by Python per level pair (no interpreter-bound entry among the top ops). "
                      "Batching cannot cut that work; it adds some: genomes padded to the widest present count of a "
                      "level, input rows not selected per genome, LayerNorm as ~9 passes over (G, B, N) instead of "
                      "one fused kernel per genome. A torch.compile'd LayerNorm and bf16 matmuls win part of it back "
                      "(scores within the figures above). The hypernet step gains from its message passing "
                      "(hypernet.model.mean_aggregate), on either path. The per-genome kernel stays the CPU default."]
        g = col["grid_4x1024"]
        lines += ["", "4 x 1024 grid, largest genome: " + (
            f"{g['edges']:,} edges, trains in {g['peak_gib']:.2f} GiB peak (goal: within 24 GiB); supernet step "
            f"{g['supernet_step_s']:.2f} s, hypernet step {g['hypernet_step_s']:.2f} s" if g.get("trains")
            else f"failed: {g.get('error')}"), ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=6)
    common.add_data_root(ap)
    ap.add_argument("--quick", action="store_true", help="2 repeats (a smoke run)")
    ap.add_argument("--grid", nargs=3, metavar=("LEVELS", "WIDTH", "DEVICE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    global MNIST
    MNIST = Path(args.data_root) / "mnist-t10k"
    if args.grid:
        print(json.dumps(grid_memory(int(args.grid[0]), int(args.grid[1]), args.grid[2])))
        return
    repeats = 2 if args.quick else args.repeats
    load = os.getloadavg()[0]  # other jobs on the machine slow the absolute rates (the ratios are side by side)
    result = {"script": "benchmarks/throughput.py", "repeats": repeats, "load_average_at_start": load,
              "cpu": device_column(torch.device("cpu"), repeats)}
    if torch.cuda.is_available():
        cuda = device_column(torch.device("cuda"), repeats)
        cpu = result["cpu"]["training"]
        for kind in ("supernet", "hypernet"):
            best = max(cuda["training"][kind]["genome_steps_per_s"].values())
            cuda[f"{kind}_steps_per_s_vs_cpu2"] = best / max(cpu[kind]["genome_steps_per_s"].values())
        result["cuda"] = cuda
    else:
        result["cuda"] = None
        result["cuda_reason"] = "torch sees no CUDA device on the machine that ran this (CI and the dev boxes have none)"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "throughput.json").write_text(json.dumps(result, indent=1))
    (RESULTS / "throughput.md").write_text(markdown(result))
    print(json.dumps({k: v for k, v in result["cpu"].items() if "speedup" in k}, indent=1))
    print(f"wrote {RESULTS / 'throughput.json'}")


if __name__ == "__main__":
    main()
