"""Multi-objective early stopping's rule apart from the search it steers: recorded learning curves replayed.

A search's result mixes what the stopping rule loses with where the search happened to go (seeds of
the same arm differ by 5-10 % of hypervolume on mnist-t10k). This benchmark takes the search out:

1. **record**: a ``train-full`` search (the preset's truth recipe: Adam, cosine, its epochs and
   batch) runs for ``--budget`` CPU-seconds with ``EarlyStopTrain(stop=False)``; each candidate's
   validation accuracy at the checks of ``train-full-es-q75`` (5, 10, 20, 30, 50, 70 % of its steps),
   its final accuracy and its FLOPs are kept, in the order the search met them
   (``runs/benchmarks/early_stop_replay/PRESET/curvesSEED-BUDGETs.json``; a finished one is not rerun);
2. **replay**: each ``StopRule`` setting (the estimator's own code) walks that stream: at each check
   it stops the candidate or lets it go on; a candidate that goes to the end joins its archive.

Per preset and rule, over the seeds (means, and the worst seed for the hypervolume):
``steps_saved`` (1 - steps run / steps of full training; the stopped candidate's steps up to its
check), ``stopped``, ``wrongly_stopped`` (pooled over the seeds: share of stopped candidates that would have been
non-dominated against the archive they were stopped against: the check ``search_cost_cheap`` makes on
a sample, here on all), ``hv_ratio`` (hypervolume over (validation error, log10 FLOPs) of the rule's
archive over that of all candidates trained to the end; the preset's reference point) and
``hv_ratio_worst``. Equal candidates on both sides: the search-level ratio (``search_cost_cheap``)
adds the search's own variance. Writes ``benchmarks/results/early_stop_replay.{json,md}``.

    python -m benchmarks.early_stop_replay [--presets mnist-t10k,digits] [--seeds 4] [--budget 300]
    python -m benchmarks.early_stop_replay --presets mnist-t10k --record-seed 1 &   # record seeds in parallel
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import common, search_cost
from benchmarks.search_cost_report import retrained_hv
from evolution.curves import EarlyStopTrain, StopRule
from evolution.search import Search, SearchSettings

ARM = "train-full-es-q75"
# (projection, quantile, slack): the estimator's default, the arms run in search_cost, bolder ones.
RULES = [("gain", 1.0, 0.005), ("gain", 1.0, 0.0), ("linear", 1.0, 0.0), ("linear", 0.9, 0.0),
         ("linear", 0.75, 0.0), ("gain", 0.75, 0.0), ("linear", 0.5, 0.0)]
BUDGET = {"mnist-t10k": 300.0, "digits": 100.0}


class RecordingRule(StopRule):
    """A rule that keeps every finished curve, with the genome's FLOPs; it never calibrates, so it never stops."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict] = []

    def finished(self, accs, final: float, flops: int) -> None:
        self.rows.append({"flops": int(flops), "accs": [float(a) for a in accs], "final": float(final)})


def record(preset: str, seed: int, budget: float, work: Path, data_root: Path) -> list[dict]:
    """The curves of a ``train-full`` search's candidates on ``seed`` (cached under ``work``)."""
    path = work / preset / f"curves{seed}-{budget:g}s.json"  # a recording belongs to its budget
    if path.is_file():
        return json.loads(path.read_text())
    cfg = search_cost.PRESETS[preset]
    data = search_cost.build_data(cfg["data"], seed, data_root)
    args = dict(search_cost.load_arm(ARM, preset)["estimator"]["init_args"], stop=False)
    est = EarlyStopTrain(data, seed=seed, **args)
    est.rule = RecordingRule()
    run_dir = work / preset / f"search{seed}"
    if run_dir.exists():  # a killed recording starts again: its curves were never written
        import shutil

        shutil.rmtree(run_dir)
    settings = SearchSettings(run_dir=str(run_dir), seed=seed, iterations=10**6, progress=False,
                              objectives=("error", "flops"), **cfg["search"])
    search = Search(settings, data, est)
    start = time.process_time()
    search.start()
    while time.process_time() - start < budget:
        search.step()
    if not est.rule.rows:
        raise ValueError(f"{preset} seed {seed}: no candidate trained to the end in {budget:g} CPU-s")
    doc = {"checks": list(est.checks), "rows": est.rule.rows, "cpu_seconds": time.process_time() - start}
    tmp = path.with_suffix(".tmp")  # a kill never leaves half a file to be read back
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)
    return doc


def replay(rows: list[dict], rule: StopRule, checks: list[float]) -> dict:
    """``rule`` over the recorded stream: steps saved, stops, wrong stops, and its archive's points."""
    saved, stopped, wrong = 0.0, 0, 0
    for r in rows:
        for i, frac in enumerate(checks):
            if rule.stop(r["accs"][i], i, r["flops"]) is not None:
                stopped, saved = stopped + 1, saved + 1 - frac
                wrong += not rule.dominated(r["final"], r["flops"])
                break
        else:
            rule.finished(r["accs"], r["final"], r["flops"])
    return {"steps_saved": saved / len(rows), "stopped": stopped / len(rows), "n_stopped": stopped, "n_wrong": wrong,
            "archive": list(rule.archive)}


def name(projection: str, quantile: float, slack: float) -> str:
    return f"{projection} q{quantile:g}" + (f" +{slack:g}" if slack else "")


def run(presets: list[str], seeds: int, budgets: dict, work: Path, data_root: Path) -> dict:
    torch.set_num_threads(1)
    out = {}
    for preset in presets:
        ref = search_cost.PRESETS[preset]["reference_point"]
        docs = [record(preset, s, budgets[preset], work, data_root) for s in range(seeds)]
        per_rule = {}
        for projection, quantile, slack in RULES:
            runs = []
            for doc in docs:
                res = replay(doc["rows"], StopRule(8, slack, quantile, projection), doc["checks"])
                full = retrained_hv([(r["final"], r["flops"]) for r in doc["rows"]], ref)
                res["hv_ratio"] = retrained_hv(res.pop("archive"), ref) / full if full > 0 else float("nan")
                runs.append(res)
            stopped = sum(r["n_stopped"] for r in runs)
            per_rule[name(projection, quantile, slack)] = {
                **{k: float(np.mean([r[k] for r in runs])) for k in ("steps_saved", "stopped", "hv_ratio")},
                # pooled over the seeds: a seed with no stop says nothing about wrong stops
                "wrongly_stopped": sum(r["n_wrong"] for r in runs) / stopped if stopped else None,
                "hv_ratio_worst": float(min(r["hv_ratio"] for r in runs))}
        out[preset] = {"seeds": seeds, "candidates": [len(d["rows"]) for d in docs],
                       "record_cpu_seconds": [round(d["cpu_seconds"], 1) for d in docs], "reference_point": ref,
                       "rules": per_rule}
    return out


def page(summary: dict) -> str:
    lines = ["# Early stopping's rule on recorded curves (`benchmarks/early_stop_replay.py`)", "",
             "Each preset's `train-full` searches recorded every candidate's validation accuracy at the checks "
             f"of `{ARM}`; each rule (projection, quantile, + slack) replays that stream with `StopRule`. "
             "Keys: `presets.PRESET.rules.RULE.{steps_saved, stopped, wrongly_stopped, hv_ratio, hv_ratio_worst}`; "
             "`hv_ratio`: validation hypervolume of the rule's archive over all candidates', the same candidates.", ""]
    for preset, sec in summary["presets"].items():
        lines += [f"## {preset}: {sec['seeds']} seeds, {sum(sec['candidates'])} candidates "
                  f"({', '.join(map(str, sec['candidates']))})", "",
                  "| rule | steps saved | stopped | wrongly stopped | hv ratio | worst seed |", "|---|---|---|---|---|---|"]
        for rule, r in sec["rules"].items():
            wrong = "-" if r["wrongly_stopped"] is None else f"{r['wrongly_stopped']:.3f}"
            lines.append(f"| {rule} | {r['steps_saved']:.3f} | {r['stopped']:.3f} | {wrong} | "
                         f"{r['hv_ratio']:.4f} | {r['hv_ratio_worst']:.4f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="mnist-t10k,digits")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--budget", type=float, default=None, help="CPU-seconds of each recorded search "
                    "(default: mnist-t10k 300, digits 100)")
    ap.add_argument("--record-seed", type=int, default=None, help="only record this seed of each preset (to record "
                    "seeds in parallel processes), then stop without results")
    ap.add_argument("--work", default=str(common.CACHE / "early_stop_replay"))
    common.add_data_root(ap)
    args = ap.parse_args(argv)
    presets = args.presets.split(",")
    unknown = [p for p in presets if p not in BUDGET]
    if unknown:
        ap.exit(2, f"error: preset {unknown[0]!r}: expected one of {', '.join(BUDGET)}\n")
    if args.seeds < 1 or (args.budget is not None and args.budget <= 0):
        ap.exit(2, f"error: --seeds {args.seeds}, --budget {args.budget}: expected at least 1 seed and a budget > 0\n")
    budgets = {p: args.budget if args.budget is not None else BUDGET[p] for p in presets}
    try:
        if args.record_seed is not None:
            torch.set_num_threads(1)
            for p in presets:
                record(p, args.record_seed, budgets[p], Path(args.work), Path(args.data_root))
            return 0
        presets_out = run(presets, args.seeds, budgets, Path(args.work), Path(args.data_root))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = {"script": "benchmarks/early_stop_replay.py", "arm": ARM, "presets": presets_out}
    path = common.write_results("early_stop_replay", summary, page=page(summary))
    print(page(summary))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
