"""The cheap estimators' ``search_cost`` arms, side by side with the arms they must beat, on the seeds
run so far; and the check of multi-objective early stopping.

Reads the finished arms of ``benchmarks/search_cost.py`` runs (``--work``), writes
``benchmarks/results/search_cost_cheap.json`` (+ ``.md``): per preset and arm, the mean figures over
the seeds every compared arm finished (``report.collect``'s keys), per seed the retrained
hypervolume, which arms beat ``train-low`` and ``supernet`` on every common seed; for
``train-full-es`` its steps saved (``steps_saved``), its retrained hypervolume over train-full's
at twice the CPU-seconds, and the sampled check: each sampled stopped candidate trained to the end
by the truth recipe (the per-seed cache: the same training as the arm's) and whether it would then
have been non-dominated against the archive it was stopped against (``stopped_would_make_front``).

    python -m benchmarks.search_cost_cheap [--work runs/benchmarks/search_cost] [--presets digits,mnist-t10k]
        [--label NAME]   # the runs in --work as sections 'PRESET, NAME'; other sections in --out are kept
        [--budget S]     # the CPU-seconds per arm those runs had (search_cost --budget), if not the preset's;
                         # it applies to every preset in --presets
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks import common, metering, search_cost, search_cost_report as report
from evolution.genome import Genome

OUT = Path(__file__).parent / "results" / "search_cost_cheap.json"
CHEAP = ("halving", "curve", "predictor", "predictor-pairwise", "predictor-pairwise-pareto", "predictor-pairwise-hv", "predictor-pairwise-hv-supernet", "predictor-gbr-hv", "predictor-gbr-bag-hv", "predictor-gbr-bag-refit-hv", "predictor-gbr-refit-hv", "predictor-gbr-bag-refit-lean-hv", "predictor-gbr-bag-refit-hv-f16", "predictor-gbr-bag-refit-hv-supernet", "predictor-gbr-bag-refit-lean-hv-supernet", "proxy-naswot", "ensemble", "train-full-es", "train-full-es-linear", "train-full-es-q75", "train-full-es-q90", "train-es-q75", "supernet-half-updates")
EARLY = ("train-full-es", "train-full-es-linear", "train-full-es-q75", "train-full-es-q90", "train-es-q75")
REFERENCE = ("train-low", "supernet", "train-full")
# arms also compared with the arms they vary (besides train-low and the supernet)
ALSO = {"predictor-gbr-bag-refit-hv": ("predictor-gbr-bag-hv", "predictor-gbr-hv"),
        "predictor-gbr-refit-hv": ("predictor-gbr-hv",), "predictor-gbr-bag-refit-lean-hv": ("predictor-gbr-bag-refit-hv",),
        "predictor-gbr-bag-refit-hv-f16": ("predictor-gbr-bag-refit-hv",),
        "predictor-gbr-bag-refit-hv-supernet": ("predictor-gbr-bag-refit-hv",),
        "predictor-gbr-bag-refit-lean-hv-supernet": ("predictor-gbr-bag-refit-hv-supernet", "predictor-gbr-bag-refit-hv")}
# the references against each other: the room a cheap arm has above the default (train-full: 10x its CPU-s)
GAPS = (("train-full", "supernet"), ("train-full", "train-low"), ("supernet", "train-low"))
MAX_CHECKED = 20  # sampled stops trained to the end per arm and seed (each costs a full training)


def stop_check(work: Path, preset: str, seeds: list[int], data_root: Path, arm: str) -> dict:
    """Each sampled stop of early-stopping arm ``arm``, trained to the end (cached): would it have made the front?"""
    cfg = search_cost.PRESETS[preset]
    made, total = 0, 0
    for s in seeds:
        path = work / arm / f"seed{s}" / "result.json"
        if not path.is_file():
            continue
        rep = json.loads(path.read_text()).get("estimator_report", {})
        if not rep.get("stops_sampled"):
            continue
        data = search_cost.build_data(cfg["data"], s, data_root)
        truth = metering.Truth(data, cfg["epochs"], cfg["batch_size"], s, search_cost._cache(work, s))
        sample = rep["stops_sampled"]
        for stop in sample[:: max(1, len(sample) // MAX_CHECKED)]:  # evenly over the run, at most ~MAX_CHECKED
            final = truth.truth(Genome.from_json(stop["genome"]))["val"]
            total += 1
            made += not any(a >= final and f <= stop["flops"] and (a > final or f < stop["flops"])
                            for a, f in stop["archive"])
    return {"stopped_checked": total, "stopped_would_make_front": made / total if total else None}


def train_full_hv_at(work: Path, seed: int, cpu: float, ref: list[float]) -> tuple[float, float] | None:
    """train-full's retrained hypervolume after its last iteration within ``cpu`` CPU-seconds, and
    that iteration's CPU-seconds, from its iterations and the truth cache (its estimates are the
    truth: the anytime curve needs no result.json, so an unfinished run gives it too)."""
    d = work / "train-full" / f"seed{seed}"
    cache = work / f"truth-seed{seed}.jsonl"
    if not (d / "iterations.jsonl").is_file() or not cache.is_file():
        return None
    known = {r["key"]: r for r in map(json.loads, cache.read_text().splitlines())}
    rows = [r for r in map(json.loads, (d / "iterations.jsonl").read_text().splitlines())
            if "iteration" in r and r["cpu"] <= cpu]
    if not rows:
        return None
    last = rows[-1]
    pts = []
    for cid in set(last["archive"]) | set(last["top"]):
        g = Genome.load(d / "search" / "genomes" / f"{cid}.json")
        t = known.get(metering.genome_key(g))
        if t and np.isfinite(t["test"]):
            from evolution import cost

            pts.append((t["test"], cost.flops(g).total))
    return report.retrained_hv(pts, ref), last["cpu"]


def section(work: Path, preset: str, data_root: Path, budget: float | None = None) -> dict | None:
    """``budget``: the CPU-seconds per arm the runs in ``work`` were given (``search_cost --budget``;
    None: the preset's); ValueError when any seed's CPU-seconds say otherwise."""
    cfg = search_cost.PRESETS[preset]
    if not work.is_dir():
        return None
    budget = cfg["budget"] if budget is None else budget
    arms = [a for a in REFERENCE + CHEAP if (work / a).is_dir()]
    full = report.collect(work, preset, cfg, arms, cfg["seeds"])
    for a in arms:  # each seed: an arm overruns its budget by at most its last iteration
        want = budget * float(search_cost.load_arm(a, preset).get("budget_factor", 1.0))
        for row in full["arms"].get(a, {}).get("seeds", []):
            cpu = row.get("cpu_seconds")
            if cpu is not None and not 0.9 * want <= cpu <= 1.5 * want:
                raise ValueError(f"{work}: arm {a} seed {row['seed']} ran {cpu:.0f} CPU-s, not about {want:.0f}: "
                                 "give the --budget it ran with")
    per_seed = {a: {r["seed"]: r.get("retrained_hv") for r in full["arms"].get(a, {}).get("seeds", [])} for a in arms}
    out = {"seeds": full["seeds"], "reference_point": full["reference_point"], "budget_cpu_seconds": budget,
           "arms": {}, "beats": {}}
    for a in arms:
        if a not in full["arms"]:
            continue
        out["arms"][a] = {"mean": full["arms"][a]["mean"],
                          "retrained_hv_by_seed": {str(k): v for k, v in per_seed[a].items()}}
    pairs = [(a, ref) for a in CHEAP if a in per_seed for ref in ("train-low", "supernet") + ALSO.get(a, ())]
    for a, ref in pairs + list(GAPS):
        common = [s for s in per_seed.get(a, {}) if s in per_seed.get(ref, {}) and per_seed[a][s] is not None
                  and per_seed[ref][s] is not None]
        if common:
            diff = np.array([per_seed[a][s] - per_seed[ref][s] for s in common])
            out["beats"][f"{a}>{ref}"] = {"seeds": common, "wins": int((diff > 0).sum()), "mean_diff": float(diff.mean()),
                                          **paired(diff)}
    for arm in EARLY:
        es = {}
        for s in full["seeds"]:
            p = work / arm / f"seed{s}" / "result.json"
            if p.is_file():
                rep = json.loads(p.read_text()).get("estimator_report", {})
                es[str(s)] = {k: v for k, v in rep.items() if k != "stops_sampled"}
                hv, ref_hv = per_seed.get(arm, {}).get(s), per_seed.get("train-full", {}).get(s)
                es[str(s)]["hv_ratio_vs_train_full"] = hv / ref_hv if hv and ref_hv else None
                # an unfinished train-full: its anytime curve at the same CPU-seconds and at its last iteration
                at_last = train_full_hv_at(work, s, 1e9, out["reference_point"])
                cpu = json.loads(p.read_text())["cpu_seconds"]
                at_same = train_full_hv_at(work, s, cpu, out["reference_point"])
                es[str(s)].update(cpu_seconds=cpu, retrained_hv=hv,
                                  train_full_hv_at_same_cpu=at_same and at_same[0],
                                  train_full_hv_at_its_last_iteration=at_last and at_last[0],
                                  train_full_cpu_at_its_last_iteration=at_last and at_last[1])
        if es:
            ratios = [v["hv_ratio_vs_train_full"] for v in es.values() if v["hv_ratio_vs_train_full"]]
            out.setdefault("early_stopping", {})[arm] = {
                "by_seed": es, **stop_check(work, preset, full["seeds"], data_root, arm),
                "steps_saved": float(np.mean([v["steps_saved"] for v in es.values()])),
                "hv_ratio_vs_train_full": float(np.mean(ratios)) if ratios else None}
    return out


def paired(diff: np.ndarray) -> dict:
    """Standard error of the mean paired difference, its 95 % t interval and the paired t-test's two-sided p
    (none for one seed)."""
    if len(diff) < 2:
        return {}
    from scipy import stats

    se = float(diff.std(ddof=1) / np.sqrt(len(diff)))
    half = float(stats.t.ppf(0.975, len(diff) - 1)) * se
    ci = [float(diff.mean()) - half, float(diff.mean()) + half]
    if se == 0:  # every seed moved by the same amount: certain, unless that amount is nothing
        return {"se": 0.0, "p": 1.0 if diff.mean() == 0 else 0.0, "ci95": ci}
    return {"se": se, "p": float(stats.ttest_1samp(diff, 0.0).pvalue), "ci95": ci}


def _beat(v: dict) -> str:
    """'3/10 (+0.023 ± 0.026, p 0.4)'; sections written before the standard error: the mean alone."""
    spread = ""
    if "se" in v:
        spread = f" ± {v['se']:.3f}, p " + (f"{v['p']:.2g}" if v["p"] >= 0.001 else "< 0.001")
    return f"{v['wins']}/{len(v['seeds'])} ({v['mean_diff']:+.3f}{spread})"


def page(doc: dict) -> str:
    lines = ["# Search cost of the cheap estimators (issue 24)", "",
             "Made by `python -m benchmarks.search_cost_cheap` from `benchmarks/search_cost.py` runs "
             "(`benchmarks/results/search_cost_cheap.json`). Retrained hypervolume over (test error, log10 FLOPs) "
             "at equal CPU-seconds (train-full: 10x, train-full-es*: 5x, each arm's CPU-s in its table), means over the seeds listed. "
             "Wins on common seeds: seeds won / common seeds (mean paired difference ± its standard error, the paired "
             "t-test's p; sections written before these were kept give the mean alone).", ""]
    for preset, sec in doc["presets"].items():
        lines += [f"## {preset} (seeds {sec['seeds']})", "",
                  "| arm | CPU-s | retrained HV | HV by seed | iterations | candidates | verify tau |", "|---|---|---|---|---|---|---|"]
        for a, r in sec["arms"].items():
            m = r["mean"]
            by = ", ".join(f"{v:.3f}" if v is not None else "-" for v in r["retrained_hv_by_seed"].values())
            lines.append(f"| {a} | {report._fmt(m['cpu_seconds'], 0)} | {report._fmt(m['retrained_hv'])} | {by} | "
                         f"{report._fmt(m['iterations'], 0)} | {report._fmt(m['candidates'], 0)} | {report._fmt(m['kendall_tau'], 2)} |")
        lines += ["", "Wins on common seeds: " + "; ".join(f"{k} {_beat(v)}" for k, v in sec["beats"].items()),
                  ""]
        for arm, e in sec.get("early_stopping", {}).items():
            same = {k: (v.get("retrained_hv"), v.get("train_full_hv_at_same_cpu"), v.get("train_full_hv_at_its_last_iteration"),
                        v.get("train_full_cpu_at_its_last_iteration")) for k, v in e["by_seed"].items()}
            lines += [f"Early stopping ({arm}): steps saved {report._fmt(e['steps_saved'])}, retrained HV "
                      f"{report._fmt(e['hv_ratio_vs_train_full'])} of train-full's (train-full: 10x the arms' budget; this arm's CPU-s above) "
                      f"(per seed: its HV, train-full's at the same CPU-seconds, at train-full's last iteration and "
                      f"that iteration's CPU-seconds: {same}); "
                      f"sampled stops that would have made the front: {e['stopped_would_make_front']} "
                      f"of {e['stopped_checked']}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=str(search_cost.REPO / "runs" / "benchmarks" / "search_cost"))
    ap.add_argument("--presets", default="digits,mnist-t10k")
    ap.add_argument("--data-root", default=str(common.DATA_ROOT))
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--label", default=None, help="write each preset as the section 'PRESET, LABEL' (runs kept in "
                    "another --work); the JSON at --out keeps the sections this run does not write")
    ap.add_argument("--budget", type=float, default=None, help="CPU-seconds per arm the runs in --work were given "
                    "(search_cost --budget; default: the preset's), for every preset in --presets")
    args = ap.parse_args(argv)
    if args.budget is not None and not args.budget > 0:
        print(f"error: --budget {args.budget}: expected a positive number of CPU-seconds", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    out = Path(args.out)
    # the sections it writes are replaced, the others kept (runs of other work dirs, e.g. --label ones)
    doc = json.loads(out.read_text()) if out.is_file() else {"presets": {}}
    for preset in args.presets.split(","):
        try:
            sec = section(Path(args.work) / preset, preset, Path(args.data_root), args.budget)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        if sec:
            doc["presets"][f"{preset}, {args.label}" if args.label else preset] = sec
    out.write_text(common.summary_json(doc) + "\n")
    out.with_suffix(".md").write_text(page(doc))
    print(page(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
