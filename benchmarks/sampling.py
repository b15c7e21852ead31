"""Genome sampling cost, and its share of the supernet's and the hypernet's training steps.

Every training step of a weight-sharing estimator draws new genomes (``evolution.sampling``), so
drawing them is on the critical path. Side by side in one run, on the mnist grid (784 inputs,
3 levels x 256 slots, 10 outputs, densities 0.003-0.3 as the configs):

- milliseconds per genome of each sampler, with the current ``law_edges`` (the edge law of every
  level pair computed once per space, the density scale solved by Newton's method) and with the
  reference it replaced (distances recomputed for every pair of neuron sets, the scale found by 40
  bisection halvings; nested draws also recompute their level pairs' law and keys, as they did),
  and whether both draw the same genomes from the same seed. Both prune and sort with the current
  ``evolution.dag.reachable`` (a few propagation passes before any sparse BFS: 0.12 vs 0.36 ms per
  drawn genome) and ``Genome.canonical`` (one stable argsort instead of a four-key lexsort: 0.05 vs
  0.64 ms), one-off measurements, so the reference is that much faster than the code it stands for;
- one training step as ``HypernetModule`` runs it (``configs/hypernet/mnist-t10k.yaml``: 8 genomes,
  readout 512 of a 640-example batch) and as ``SupernetModule`` runs it in ``benchmarks/ranking.py``
  (4 uniform genomes, batch 128), drawing included, with either sampler: its seconds and the share
  spent drawing genomes. Median of interleaved repeats.

Writes ``benchmarks/results/sampling.json``.

    python -m benchmarks.sampling [--repeats 20]
"""
from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np
import torch
import yaml

from benchmarks import common
from evolution import sampling
from evolution.genome import SearchSpace
from evolution.sampling import GenomeSampler

OUT = common.RESULTS / "sampling.json"
REPO = common.REPO


def bisection_scale(law: np.ndarray, density: float) -> np.ndarray:
    """The reference density scale: ``min(1, s * law)`` with ``s`` bisected until their mean is ``density``."""
    if density >= 1.0:
        return np.ones_like(law)
    scale = density / law.mean()
    if scale * law.max() <= 1.0:
        return scale * law
    lo, hi = 0.0, 1.0
    while np.minimum(1.0, hi * law).mean() < density:
        hi *= 2.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.minimum(1.0, mid * law).mean() < density else (lo, mid)
    return np.minimum(1.0, hi * law)


def per_call_law_edges(space: SearchSpace, src: np.ndarray, dst: np.ndarray, density: float,
                       rng: np.random.Generator) -> np.ndarray:
    """The reference ``law_edges``: the distances of the two sets' pairs computed on every call."""
    s, d = (m.ravel() for m in np.meshgrid(src, dst, indexing="ij"))
    if space.level[dst[0]] == space.output_level:
        law = np.ones(len(s))
    else:
        offset = space.positions[src][:, None, :] - space.positions[dst][None, :, :]
        law = np.exp(np.sqrt((offset ** 2).sum(-1)).ravel() / -(4.0 + 1.5 * space.level[dst[0]]))
    keep = rng.random(len(s)) < bisection_scale(law, density)
    return np.stack([s[keep], d[keep]], 1)


@contextlib.contextmanager
def reference_sampling():
    """``evolution.sampling`` drawing as it did before: per-call distances and bisection."""
    saved = sampling.law_edges, sampling._scale_to_density, sampling._level_law, sampling._pair_keys
    sampling.law_edges, sampling._scale_to_density = per_call_law_edges, bisection_scale
    # Uncached: nested genomes recomputed the law and hashed the keys of their level pairs per draw.
    sampling._level_law, sampling._pair_keys = sampling._level_law.__wrapped__, sampling._pair_keys.__wrapped__
    try:
        yield
    finally:
        sampling.law_edges, sampling._scale_to_density, sampling._level_law, sampling._pair_keys = saved


def draw_ms(sampler: GenomeSampler, reference: bool, n: int = 40) -> float:
    """Milliseconds per genome over ``n`` genomes of a fixed seed (after one warm-up draw)."""
    with reference_sampling() if reference else contextlib.nullcontext():
        rng = np.random.default_rng(0)
        sampler.sample(rng, 4)
        start = time.perf_counter()
        for _ in range(n // 4):
            sampler.sample(rng, 4)
        return (time.perf_counter() - start) / n * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20, help="interleaved training steps per sampler")
    common.add_data_root(ap)
    args = ap.parse_args()
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    space = SearchSpace((1, 28, 28), 10, levels=3, width=256)

    kinds = {"uniform": dict(kind="uniform"), "uniform, skip 0-0.5": dict(kind="uniform", skip=(0.0, 0.5)),
             "fair": dict(kind="fair"), "nested": dict(kind="nested")}
    draws = {}
    for label, kw in kinds.items():
        sampler = GenomeSampler(space, density=(0.003, 0.3), **kw)
        with reference_sampling():
            old = sampler.sample(np.random.default_rng(7), 12)
        new = sampler.sample(np.random.default_rng(7), 12)
        same = all(np.array_equal(a.edges, b.edges) and np.array_equal(a.hidden, b.hidden) for a, b in zip(old, new))
        ref, cur = np.median([[draw_ms(sampler, True), draw_ms(sampler, False)] for _ in range(3)], axis=0)
        draws[label] = {"reference_ms": float(ref), "current_ms": float(cur), "speedup": float(ref / cur),
                        "same_genomes": bool(same)}

    # Training steps, drawing included.
    from evolution.data import IDXDataModule
    from hypernet.module import HypernetModule, hypernet_loss
    from oneshot.module import SupernetModule, supernet_loss

    data = IDXDataModule(str(common.mnist_t10k(args.data_root)), seed=0)
    data.setup("fit")
    x_all, y_all = data.tensors("train")
    cfg = yaml.safe_load((REPO / "configs" / "hypernet" / "mnist-t10k.yaml").read_text())["model"]
    hyper = HypernetModule(data.input_shape, data.num_classes, **cfg)
    hyper_opt = torch.optim.Adam(hyper.parameters(), lr=cfg["lr"])
    sup = SupernetModule(data.input_shape, data.num_classes, levels=3, width=256, sampler="uniform",
                         density=(0.003, 0.3), genomes_per_step=4, lr=3e-3, seed=0)
    sup_opt = sup.configure_optimizers()  # LazyAdam

    def hyper_step() -> tuple[float, float]:
        start = time.perf_counter()
        genomes = hyper.sampler.sample(hyper.rng, cfg["genomes_per_step"])
        drawn = time.perf_counter()
        loss = hypernet_loss(hyper.model, genomes, x_all[:640], y_all[:640], cfg["readout"], 1.0, hyper.readout_scale)
        hyper_opt.zero_grad()
        loss.backward()
        hyper_opt.step()
        return time.perf_counter() - start, drawn - start

    def sup_step() -> tuple[float, float]:
        start = time.perf_counter()
        genomes = sup.sampler.sample(sup.rng, 4)
        drawn = time.perf_counter()
        loss = supernet_loss(sup.supernet, genomes, x_all[:128], y_all[:128])
        sup_opt.zero_grad()
        loss.backward()
        sup_opt.step()
        return time.perf_counter() - start, drawn - start

    steps = {}
    for name, step in (("hypernet", hyper_step), ("supernet", sup_step)):
        step(), step()  # warm up
        runs = {True: [], False: []}
        for _ in range(args.repeats):
            for reference in (True, False):
                with reference_sampling() if reference else contextlib.nullcontext():
                    runs[reference].append(step())
        ref, cur = (np.median(np.array(runs[r]), axis=0) for r in (True, False))
        steps[name] = {"reference_step_s": float(ref[0]), "current_step_s": float(cur[0]),
                       "speedup": float(ref[0] / cur[0]), "reference_draw_share": float(ref[1] / ref[0]),
                       "current_draw_share": float(cur[1] / cur[0])}

    print("\ndrawing genomes on the mnist grid (ms per genome, median of 3 x 40)")
    print(f"{'sampler':>22} {'reference':>10} {'current':>8} {'speedup':>8} {'same genomes':>13}")
    for label, r in draws.items():
        print(f"{label:>22} {r['reference_ms']:>10.2f} {r['current_ms']:>8.2f} {r['speedup']:>8.2f} {str(r['same_genomes']):>13}")
    print(f"\ntraining steps, drawing included (median of {args.repeats}, interleaved)")
    print(f"{'step':>10} {'reference s':>12} {'current s':>10} {'speedup':>8} {'draw share: ref':>16} {'current':>8}")
    for name, r in steps.items():
        print(f"{name:>10} {r['reference_step_s']:>12.4f} {r['current_step_s']:>10.4f} {r['speedup']:>8.2f} "
              f"{r['reference_draw_share']:>16.2f} {r['current_draw_share']:>8.2f}")
    common.write_results("sampling", {"grid": "mnist 3 x 256, density 0.003-0.3", "draw": draws, "steps": steps})
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
