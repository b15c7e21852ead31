"""Inference latency of the exported best network vs the dense MLP baseline of the same run.

Takes a finished ``python -m evolution run`` directory (default ``runs/run/digits``; the run is made
first when it is missing): the best retrained candidate of the front and the dense MLP trained the
same way with about as many parameters. Both are exported with ``torch.export`` and timed side by
side (alternating, median of repeats) at batch 1 and 256, and so is the ``SparseNet`` itself with
its automatic kernel choice. Writes ``benchmarks/results/export_latency.json``.

    python -m benchmarks.export_latency [--run_dir runs/run/digits] [--repeats 200]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import common
from evolution.__main__ import main as cli
from evolution.export import export
from evolution.train import GenomeModule

REPO = common.REPO


def timed(fn, x, repeats: int) -> float:
    with torch.no_grad():
        fn(x)
        ts = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn(x)
            ts.append(time.perf_counter() - start)
    return float(np.median(ts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run_dir", default=str(REPO / "runs/run/digits"))
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args()
    run = Path(args.run_dir)
    if not (run / "summary.json").is_file():
        assert cli(["run", "--config", str(REPO / "configs/run/digits.yaml"), "--run_dir", str(run)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    best_dir = run / "search" / "verify" / str(summary["best"]["id"])
    nets = {"sparse": best_dir, "dense": run / "baseline"}
    rows = {}
    for name, d in nets.items():
        module = GenomeModule.from_checkpoint(d / "model.ckpt")
        program = torch.export.load(export(str(d), "torch")).module()
        rows[name] = {"program": program, "net": module.net.eval(), "n_in": module.net.plan.n_inputs}
    result = {"best": summary["best"]["id"], "sparse_val_acc": summary["best"]["val_acc"],
              "dense_val_acc": summary["baseline"]["val_acc"], "sparse_flops": summary["best"]["flops"],
              "dense_flops": summary["baseline"]["flops"], "threads": torch.get_num_threads()}
    print(f"best candidate {summary['best']['id']} (val {summary['best']['val_acc']:.4f}, {summary['best']['flops']} FLOPs) "
          f"vs {summary['baseline']['name']} (val {summary['baseline']['val_acc']:.4f}, {summary['baseline']['flops']} FLOPs)")
    print(f"{'batch':>6} {'exported sparse ms':>18} {'exported dense ms':>17} {'ratio':>6} {'SparseNet auto ms':>17}")
    for batch in (1, 256):
        x = torch.rand(batch, rows["sparse"]["n_in"])
        t = {"sparse": [], "dense": [], "auto": []}
        for _ in range(5):  # alternate, so drift of this noisy host hits both
            t["sparse"].append(timed(rows["sparse"]["program"], x, args.repeats // 5))
            t["dense"].append(timed(rows["dense"]["program"], x, args.repeats // 5))
            t["auto"].append(timed(rows["sparse"]["net"], x, args.repeats // 5))
        med = {k: float(np.median(v)) for k, v in t.items()}
        ratio = med["sparse"] / med["dense"]
        result[f"batch{batch}"] = {**{f"{k}_ms": 1e3 * v for k, v in med.items()}, "latency_ratio": ratio}
        print(f"{batch:>6} {1e3 * med['sparse']:>18.3f} {1e3 * med['dense']:>17.3f} {ratio:>6.2f} {1e3 * med['auto']:>17.3f}")
    result["latency_ratio_batch1"] = result["batch1"]["latency_ratio"]
    result["latency_ratio_batch256"] = result["batch256"]["latency_ratio"]
    out = common.write_results("export_latency", result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
