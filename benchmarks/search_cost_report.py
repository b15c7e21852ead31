"""Figures of ``benchmarks/search_cost.py``: hypervolumes, speed-ups, dense-ladder domination, and the
results page (JSON summary, Markdown table, picture). Pure functions of the arms' finished results."""
from __future__ import annotations

import json
import math
import os
import platform
import re
import time
from pathlib import Path

import numpy as np

from evolution import nsga2
from evolution.verify import rank_figures

# The arm the main job (configs/run/digits.yaml) searches with: the digits preset's winner
# (search_cost.json: presets.digits.arms.*.mean.retrained_hv and the per-seed wins in search_cost.md).
DEFAULT_ARM = "supernet"
LIMITS = (1_000, 10_000, 100_000)
KEYS = ("cpu_seconds", "fit_cpu_seconds", "retrained_hv", "speedup_vs_train_full", "hv_ratio_vs_train_full", "dominates_dense",
        "kendall_tau", "precision_at_10", "best_test_at_flops", "iterations", "candidates")


def retrained_hv(points: list[tuple[float, float]], ref: list[float]) -> float:
    """Hypervolume of (test accuracy, FLOPs) points over (test error, log10 FLOPs), bounded by ``ref``."""
    F = np.array([[1.0 - acc, math.log10(max(flops, 1))] for acc, flops in points], dtype=float).reshape(-1, 2)
    return float(nsga2.hypervolume(F, np.asarray(ref, dtype=float))) if len(F) else 0.0


def dominates_dense(front: list[tuple[float, float]], dense: list[tuple[float, float]]) -> float:
    """Share of the dense points (test accuracy, FLOPs) that some front point weakly dominates
    (at least as accurate with no more FLOPs)."""
    if not dense:
        return float("nan")
    hit = [any(a >= da and f <= df for a, f in front) for da, df in dense]
    return sum(hit) / len(dense)


def speedup(curve: list[tuple[float, float]], target: float, cpu: float) -> float | None:
    """CPU-seconds the reference curve ((cpu, hypervolume) after each iteration) needs to reach
    ``target``, divided by ``cpu``; None if it never does."""
    for c, hv in curve:
        if hv >= target - 1e-12:
            return c / cpu if cpu > 0 else None
    return None


def best_at(points: list[tuple[float, float]], limit: float) -> float | None:
    """Best test accuracy among points within ``limit`` FLOPs; None when none is."""
    inside = [a for a, f in points if f <= limit and np.isfinite(a)]
    return max(inside) if inside else None


def _label(limit: int) -> str:
    return f"{limit // 1000}k"


def best_tests(points: list[tuple[float, float]]) -> dict:
    """``best_test_at_flops``: the best test accuracy within 1k / 10k / 100k FLOPs (None where none is)."""
    return {_label(l): best_at(points, l) for l in LIMITS}


def seed_figures(result: dict, ref: list[float], curve: list[tuple[float, float]] | None,
                 full_hv: float | None, dense: list[tuple[float, float]]) -> dict:
    """One arm's figures on one seed."""
    pts = [p for p in result["points"] if np.isfinite(p["test"])]
    acc_flops = [(p["test"], p["flops"]) for p in pts]
    hv = retrained_hv(acc_flops, ref)
    est = np.array([p["estimate"] for p in pts])
    val = np.array([p["val"] for p in pts])
    ranks = rank_figures(est, val, 10)
    fig = {"cpu_seconds": result["cpu_seconds"], "fit_cpu_seconds": result.get("fit_cpu_seconds"), "retrained_hv": hv,
           "speedup_vs_train_full": speedup(curve, hv, result["cpu_seconds"]) if curve else None,
           "hv_ratio_vs_train_full": hv / full_hv if full_hv else None,
           "dominates_dense": dominates_dense(acc_flops, dense),
           "kendall_tau": _finite(ranks["kendall_tau"]), "precision_at_10": _finite(ranks["precision_at_k"]),
           "best_test_at_flops": best_tests(acc_flops),
           "iterations": result["iterations"], "candidates": result["candidates"],
           "front": sorted([p["flops"], round(p["test"], 4)] for p in pts if p["on_front"])}
    return fig


def _finite(x: float) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _mean(values: list) -> float | None:
    vals = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def _means(rows: list[dict], keys) -> dict:
    """Mean over seeds of each key (of each inner key where the value is a dict); None where none is finite."""
    out = {}
    for k in keys:
        vals = [r.get(k) for r in rows]
        inner = next((v for v in vals if isinstance(v, dict)), None)
        out[k] = ({i: _mean([v.get(i) for v in vals if isinstance(v, dict)]) for i in inner} if inner is not None
                  else _mean(vals))
    return out


def collect(work: Path, key: str, cfg: dict, arms: list[str], n_seeds: int) -> dict:
    """Every finished arm of ``work`` (all seeds found) as the preset's section of the JSON."""
    ref = cfg["reference_point"]
    seeds = sorted(int(p.stem.removeprefix("dense-seed")) for p in work.glob("dense-seed*.json"))
    names = list(dict.fromkeys(arms + sorted(p.name for p in work.iterdir() if p.is_dir()))) if work.is_dir() else arms
    dense, curves, full_hv = {}, {}, {}
    for s in seeds:
        dense[s] = json.loads((work / f"dense-seed{s}.json").read_text())
        full = work / "train-full" / f"seed{s}" / "result.json"
        if full.is_file():
            res = json.loads(full.read_text())
            curves[s] = [(c, retrained_hv([(a, f) for a, f in pts if np.isfinite(a)], ref))
                         for c, pts in res["curve_points"]]
            full_hv[s] = retrained_hv([(p["test"], p["flops"]) for p in res["points"] if np.isfinite(p["test"])], ref)
    out = {"reference_point": ref, "budget_cpu_seconds": cfg["budget"], "recipe": {"epochs": cfg["epochs"],
           "batch_size": cfg["batch_size"], "lr": 3e-3, "schedule": "cosine"}, "seeds": seeds,
           "search": cfg["search"], "arms": {}}
    dense_rows = []
    for s in seeds:
        pts = [(d["test"], d["flops"]) for d in dense[s]]
        dense_rows.append({"seed": s, "retrained_hv": retrained_hv(pts, ref),
                           "best_test_at_flops": best_tests(pts),
                           "points": [[d["name"], d["flops"], round(d["test"], 4)] for d in dense[s]]})
    out["dense"] = {"mean": _means(dense_rows, ("retrained_hv", "best_test_at_flops")), "seeds": dense_rows}
    for name in names:
        rows = []
        for s in seeds:
            d = work / name / f"seed{s}"
            if (d / "result.json").is_file():
                res = json.loads((d / "result.json").read_text())
                rows.append({"seed": s, **seed_figures(res, ref, curves.get(s) if name != "train-full" else None,
                                                       full_hv.get(s), [(x["test"], x["flops"]) for x in dense[s]])})
            elif (d / "error.json").is_file():
                rows.append({"seed": s, "error": json.loads((d / "error.json").read_text())["error"]})
        if rows:
            out["arms"][name] = {"mean": _means(rows, KEYS), "seeds": rows}
    for name, arm in out["arms"].items():
        # Against random search scored by the same estimator where that arm ran, else by train-low.
        other = out["arms"].get(f"random-{name}", out["arms"].get("random", {}))
        rand = {r["seed"]: r.get("retrained_hv") for r in other.get("seeds", [])}
        pairs = [(r.get("retrained_hv"), rand.get(r["seed"])) for r in arm["seeds"]]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        own = name.startswith("random")
        arm["mean"]["wins_vs_random"] = sum(a > b for a, b in pairs) / len(pairs) if pairs and not own else None
        arm["mean"]["seeds_beyond_train_full"] = beyond_train_full(arm)
    out["anytime"] = {str(s): [[round(c, 2), round(h, 5)] for c, h in curves[s]] for s in curves}
    return out


def _compact(doc: dict) -> str:
    """JSON with innermost lists and each per-seed row on one line (the summary stays short)."""
    rows: list[str] = []

    def mark(obj):
        if isinstance(obj, dict):
            if "seed" in obj:
                rows.append(json.dumps(obj))
                return f"@@{len(rows) - 1}@@"
            return {k: mark(v) for k, v in obj.items()}
        return [mark(v) for v in obj] if isinstance(obj, list) else obj

    text = json.dumps(mark(doc), indent=1)
    text = re.sub(r'"@@(\d+)@@"', lambda m: rows[int(m.group(1))], text)
    return re.sub(r"\[[^\[\]{}]*\]", lambda m: re.sub(r"\s+", " ", m.group(0)).replace("[ ", "[").replace(" ]", "]"),
                  text)


def _at10k(mean: dict) -> float | None:
    return (mean.get("best_test_at_flops") or {}).get("10k")


def _fmt(x, digits=3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def paired_wins(section: dict, arm: str, other: str) -> tuple[int, int] | None:
    """Seeds on which ``arm`` retrains to a higher hypervolume than ``other``, and seeds both finished."""
    if other not in section["arms"] or arm == other:
        return None
    hv = {n: {r["seed"]: r["retrained_hv"] for r in section["arms"][n]["seeds"] if r.get("retrained_hv") is not None}
          for n in (arm, other)}
    both = sorted(set(hv[arm]) & set(hv[other]))
    return sum(hv[arm][s] > hv[other][s] for s in both), len(both)


def beyond_train_full(arm: dict) -> int:
    """Seeds on which train-full's anytime curve never reaches the arm's hypervolume (its speed-up
    is then unknown, above train-full's budget factor, and left out of the mean)."""
    return sum(1 for r in arm["seeds"] if r.get("speedup_vs_train_full") is None
               and (r.get("hv_ratio_vs_train_full") or 0) >= 1)


def _speedup(arm: dict) -> str:
    n = beyond_train_full(arm)
    return _fmt(arm["mean"]["speedup_vs_train_full"], 1) + (f" (+{n} beyond)" if n else "")


def _wins(section: dict, arm: str, other: str) -> str:
    w = paired_wins(section, arm, other)
    return "-" if w is None else f"{w[0]}/{w[1]}"


def table(section: dict, default: str = DEFAULT_ARM) -> str:
    rows = ["| arm | CPU-s | retrained HV | HV / train-full | speed-up vs train-full | seeds above train-low | "
            f"seeds above {default} | beats random | dominates dense | best test <= 10k FLOPs | verify tau | iterations |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, arm in section["arms"].items():
        m = arm["mean"]
        errs = sum("error" in r for r in arm["seeds"])
        rows.append(f"| {name}{f' ({errs} failed)' if errs else ''} | {_fmt(m['cpu_seconds'], 0)} | "
                    f"{_fmt(m['retrained_hv'])} | {_fmt(m['hv_ratio_vs_train_full'])} | "
                    f"{_speedup(arm)} | {_wins(section, name, 'train-low')} | "
                    f"{_wins(section, name, default)} | {_fmt(m['wins_vs_random'], 2)} | "
                    f"{_fmt(m['dominates_dense'], 2)} | {_fmt(_at10k(m))} | {_fmt(m['kendall_tau'], 2)} | "
                    f"{_fmt(m['iterations'], 0)} |")
    d = section["dense"]["mean"]
    rows.append(f"| dense ladder | - | {_fmt(d['retrained_hv'])} | - | - | - | - | - | - | {_fmt(_at10k(d))} "
                "| - | - |")
    return "\n".join(rows)


def write(section: dict, key: str, results: Path, command: str) -> None:
    """Merge ``section`` into search_cost.json under ``key``; rewrite the page and the picture."""
    results.mkdir(parents=True, exist_ok=True)
    path = results / "search_cost.json"
    doc = json.loads(path.read_text()) if path.is_file() else {}
    doc = {"default_arm": DEFAULT_ARM, "presets": {**doc.get("presets", {}), key: section}}
    doc["presets"][key]["command"] = command
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # processes running other seeds may write it too
    tmp.write_text(_compact(doc) + "\n")
    tmp.replace(path)
    render(doc, results)


def render(doc: dict, results: Path) -> None:
    """The results page (search_cost.md) and picture (search_cost.png) of a search_cost.json document."""
    default = doc.get("default_arm", DEFAULT_ARM)
    lines = ["# Search cost: what each estimator's search finds per CPU-second",
             "", f"Made by `benchmarks/search_cost.py` (`benchmarks/results/search_cost.json`); "
             f"{time.strftime('%Y-%m-%d')}, {platform.machine()} {platform.system()}, torch on one thread. "
             f"'seeds above X': seeds on which the arm's retrained hypervolume is higher than arm X's on the same "
             f"seed; the default ({default}) is the arm the main job searches with.", ""]
    for name, sec in doc["presets"].items():
        lines += [f"## {name}", "", f"`{sec.get('command', '')}`: seeds {sec['seeds']}, budget "
                  f"{sec['budget_cpu_seconds']:.0f} CPU-s per arm (train-full: its arm file's factor), truth "
                  f"{sec['recipe']['epochs']} epochs per network, hypervolume over (test error, log10 FLOPs) "
                  f"with reference {sec['reference_point']}. Means over seeds.", "", table(sec, default), "",
                  _meaning(sec), ""]
    lines += ["![fronts and anytime curves](search_cost.png)", ""]
    (results / "search_cost.md").write_text("\n".join(lines))
    _plot(doc, results / "search_cost.png")


def _meaning(sec: dict) -> str:
    arms = {n: a["mean"] for n, a in sec["arms"].items() if a["mean"]["retrained_hv"] is not None}
    cheap = {n: m for n, m in arms.items() if n != "train-full"}
    if not cheap:
        return ""
    best = max(cheap, key=lambda n: cheap[n]["retrained_hv"])
    m = cheap[best]
    n = beyond_train_full(sec["arms"][best])
    reach = (f"train-full needs {_fmt(m['speedup_vs_train_full'], 1)}x its CPU-seconds to reach it on average"
             + (f" on the other seeds, and never does within its budget on {n} seed{'s' if n > 1 else ''}" if n else ""))
    s1 = (f"At the same CPU budget `{best}` retrains to the best front ({_fmt(m['retrained_hv'])}, "
          f"{_fmt(m['hv_ratio_vs_train_full'])} of train-full's final one; {reach}).")
    d = sec["dense"]["mean"]
    s2 = (f"The dense ladder scores {_fmt(d['retrained_hv'])}; the best arm's front weakly dominates "
          f"{_fmt(m['dominates_dense'], 2)} of its points, and its best network within 10k FLOPs tests "
          f"{_fmt(_at10k(m))} against the ladder's {_fmt(_at10k(d))}.")
    rand = [f"`{n}` {_fmt(m['retrained_hv'])}" for n, m in arms.items() if n.startswith("random")]
    s3 = f"Random genomes alone (the initial sampler, no evolution) score {', '.join(rand)}." if rand else ""
    w = paired_wins(sec, best, "train-low")
    s4 = (f"`{best}` is above `train-low` on {w[0]} of {w[1]} seeds." if w else "")
    return " ".join(x for x in (s1, s2, s3, s4) if x)


def _plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    presets = doc["presets"]
    fig, axes = plt.subplots(len(presets), 2, figsize=(12, 4.5 * len(presets)), squeeze=False)
    for row, (name, sec) in zip(axes, presets.items()):
        ax = row[0]
        for arm, a in sec["arms"].items():
            seed0 = next((r for r in a["seeds"] if "front" in r), None)
            if seed0 and seed0["front"]:
                f = np.array(seed0["front"], dtype=float)
                ax.step(f[:, 0], 1 - f[:, 1], where="post", marker="o", ms=3, label=arm)
        dense = sec["dense"]["seeds"][0]["points"] if sec["dense"]["seeds"] else []
        if dense:
            ax.scatter([p[1] for p in dense], [1 - p[2] for p in dense], marker="x", c="k", label="dense ladder")
        ax.set(xscale="log", yscale="log", xlabel="FLOPs per example", ylabel="test error",
               title=f"{name}: retrained fronts (seed {sec['seeds'][0] if sec['seeds'] else '-'})")
        ax.legend(fontsize=7)
        ax = row[1]
        for s, curve in sec.get("anytime", {}).items():
            c = np.array(curve)
            ax.plot(c[:, 0], c[:, 1], color="grey", alpha=0.6, label="train-full" if s == "0" else None)
        for arm, a in sec["arms"].items():
            pts = [(r["cpu_seconds"], r["retrained_hv"]) for r in a["seeds"] if "retrained_hv" in r]
            if pts and arm != "train-full":
                ax.scatter(*zip(*pts), s=14, label=arm)
        ax.set(xscale="log", xlabel="CPU-seconds", ylabel="retrained hypervolume", title=f"{name}: anytime")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
