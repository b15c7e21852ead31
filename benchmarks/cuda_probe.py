"""What torch's CUDA probe costs a training step on a machine without a GPU, and what skipping it saves.

Lightning's import sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1``; with torch's CUDA build every
``torch.cuda.is_available()`` then loads NVML afresh, and ``torch.optim.Adam`` asks at every step.
``evolution.device.cheap_cuda_probe`` (called where estimators resolve their device and where the
Lightning modules build Adam) lets the CUDA runtime's cached count answer instead when no device is visible. Measured side by side in one process
(one untimed call of each setting, then on-off and off-on in turn; medians), one thread:

- the probe itself (microseconds a call) and an Adam step on one 300 x 50 weight;
- training steps per second of ``TrainRun`` (``TrainEstimator``'s loop: the step ``train-low``,
  ``train-full``, early stopping, halving and the truth take) on random genomes of each preset's grid
  (digits: 2 x 64, batch 64; mnist: 3 x 256, batch 128), and the step-time ratio.

Headline keys: ``probe_us``, ``adam_step_us``, ``train_step_speedup`` (per grid: median step time
with NVML over without). On a machine with a GPU, or torch's CPU build, there is nothing to skip and
the script says so. Writes ``benchmarks/results/cuda_probe.{json,md}``.

    python -m benchmarks.cuda_probe [--repeats 7]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from benchmarks import common, search_cost
from evolution.fidelity import TrainRun
from evolution.genome import SearchSpace
from evolution.sampling import random_genome
from evolution.train_estimator import TrainEstimator

GRIDS = {"digits": {"levels": 2, "width": 64, "batch_size": 64, "density": 0.2},
         "mnist-t10k": {"levels": 3, "width": 256, "batch_size": 128, "density": 0.05}}
STEPS = 60


def _nvml(on: bool) -> None:
    os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1" if on else "0"


def _median_pair(fn, repeats: int) -> tuple[float, float]:
    """Median seconds of ``fn()`` with the NVML probe on and off: one untimed call of each first (the
    CUDA runtime's one count, Adam's state), then on-off and off-on in turn, so neither always goes first."""
    for on in (True, False):
        _nvml(on)
        fn()
    times = {True: [], False: []}
    for k in range(repeats):
        for on in ((True, False) if k % 2 == 0 else (False, True)):
            _nvml(on)
            start = time.process_time()
            fn()
            times[on].append(time.process_time() - start)
    return float(np.median(times[True])), float(np.median(times[False]))


def run(repeats: int) -> dict:
    torch.set_num_threads(1)
    probe_on, probe_off = _median_pair(lambda: [torch.cuda.is_available() for _ in range(2000)], repeats)
    weight = torch.nn.Parameter(torch.randn(300, 50))
    weight.grad = torch.ones_like(weight)
    opt = torch.optim.Adam([weight], lr=1e-3)
    adam_on, adam_off = _median_pair(lambda: [opt.step() for _ in range(500)], repeats)
    out = {"probe_us": {"nvml": probe_on / 2000 * 1e6, "skipped": probe_off / 2000 * 1e6},
           "adam_step_us": {"nvml": adam_on / 500 * 1e6, "skipped": adam_off / 500 * 1e6},
           "train_step_ms": {}, "train_step_speedup": {}}
    for preset, grid in GRIDS.items():
        data = search_cost.build_data(search_cost.PRESETS[preset]["data"], 0, common.DATA_ROOT)
        data.setup("fit")
        trainer = TrainEstimator(data, steps=STEPS, batch_size=grid["batch_size"], lr=3e-3, seed=0)
        space = SearchSpace(tuple(data.input_shape), data.num_classes, grid["levels"], grid["width"])
        rng = np.random.default_rng(0)
        genomes = [random_genome(space, rng, density=grid["density"]) for _ in range(6)]
        runs = [TrainRun(g, trainer, total=10**9) for g in genomes]
        for r in runs:
            r.advance(5)  # warm: the first steps allocate
        on, off = _median_pair(lambda: [r.advance(STEPS) for r in runs], repeats)
        n = STEPS * len(runs)
        out["train_step_ms"][preset] = {"nvml": on / n * 1e3, "skipped": off / n * 1e3}
        out["train_step_speedup"][preset] = on / off
    return out


def page(summary: dict) -> str:
    rows = [f"| probe (`torch.cuda.is_available()`), us | {summary['probe_us']['nvml']:.1f} | "
            f"{summary['probe_us']['skipped']:.1f} | {summary['probe_us']['nvml'] / summary['probe_us']['skipped']:.1f}x |",
            f"| Adam step, 300 x 50 weight, us | {summary['adam_step_us']['nvml']:.0f} | "
            f"{summary['adam_step_us']['skipped']:.0f} | {summary['adam_step_us']['nvml'] / summary['adam_step_us']['skipped']:.2f}x |"]
    for preset, ms in summary["train_step_ms"].items():
        rows.append(f"| training step, {preset} grid, ms | {ms['nvml']:.2f} | {ms['skipped']:.2f} | "
                    f"{summary['train_step_speedup'][preset]:.2f}x |")
    return "\n".join([
        "# What the CUDA probe costs a training step (`benchmarks/cuda_probe.py`)", "",
        f"torch {torch.__version__}, one thread, {summary['repeats']} alternating repeats, medians of CPU time. "
        "'NVML': `PYTORCH_NVML_BASED_CUDA_CHECK=1` as Lightning's import leaves it; 'skipped': as "
        "`evolution.device.cheap_cuda_probe` sets it where no GPU is visible. Keys: `probe_us`, `adam_step_us`, "
        "`train_step_ms`, `train_step_speedup`.", "",
        "| | NVML | skipped | ratio |", "|---|---|---|---|", *rows, ""])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    if args.repeats < 3:
        ap.exit(2, f"error: --repeats {args.repeats}: expected at least 3 (medians)\n")
    import lightning.fabric  # noqa: F401  (sets the variable, as in every run)

    if not hasattr(torch._C, "_cuda_getDeviceCount") or torch.cuda.is_available():
        print("nothing to measure: torch has no CUDA build here, or sees a GPU (the probe is kept)")
        return 0
    summary = {"script": "benchmarks/cuda_probe.py", "torch": torch.__version__, "repeats": args.repeats,
               **run(args.repeats)}
    path = common.write_results("cuda_probe", summary, page=page(summary))
    print(page(summary))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
