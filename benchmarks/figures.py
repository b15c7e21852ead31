"""Pages and pictures drawn from saved results, without rerunning a benchmark.

    python -m benchmarks.figures      # ranking.{md,png}, kernel.{md,png}, NAME.md from benchmarks/results/

``ranking.png``: per estimator, each genome's rank by estimate against its rank by the truth (both
ranking sets; a perfect estimator draws the diagonal), from ``ranking.raw.json.gz`` (``estimates``)
and ``ranking_sets.json.gz`` (the truth: the mean of seeds 0 and 1). ``kernel.png``: seconds per
call against density for each kernel on the 2048 x 2048 pair (``kernel.json``, ``rows``).
A ``ranking.json`` that still holds its raw estimates is split on the way.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from benchmarks import common

# The entries docs/ranking.md and the README's table discuss, in the order they are drawn.
HEADLINE = ["seed_vs_seed", "edges", "scratch50", "supernet_uniform", "supernet_uniform+cadence+readout",
            "supernet_uniform+population250", "supernet_uniform+population", "hypernet+readout",
            "hypernet+cadence+readout", "hypernet+finetune50", "init+readout"]
COLUMNS = [("kendall_tau", "tau"), ("size_controlled_tau", "size-ctl"), ("top10_tau", "top-10"),
           ("seconds_per_genome", "s/genome")]


def _fmt(v) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else (f"{v:.3f}" if isinstance(v, float) else str(v))


def ranking_page(summary: dict) -> str:
    """``ranking.md``: the headline entries, then every entry, both sets."""
    est = summary.get("estimators", {})
    head = "| entry | " + " | ".join(f"broad {t}" for _, t in COLUMNS) + " | " \
        + " | ".join(f"lineage {t}" for _, t in COLUMNS) + " |"
    rule = "|---" * (1 + 2 * len(COLUMNS)) + "|"

    def row(name: str) -> str:
        r = est[name]
        return f"| `{name}` | " + " | ".join(_fmt(r.get(k)) for k, _ in COLUMNS) + " | " \
            + " | ".join(_fmt(r.get(f"lineage_{k}")) for k, _ in COLUMNS) + " |"

    lines = ["# Ranking: how well each estimator orders genomes", "",
             "Made by `python -m benchmarks.ranking` (`benchmarks/results/ranking.json`, key `estimators.NAME`; "
             "raw estimates in `ranking.raw.json.gz`, key `estimates.NAME.{broad,lineage}`). "
             f"{summary.get('n_genomes')} random genomes (broad) and {summary.get('n_lineage')} genomes of a search's "
             "lineage on the mnist-t10k grid; truth: 2-seed standalone training (`benchmarks/ranking_sets.py`). "
             "tau: Kendall tau against the truth; size-ctl: tau of what is left after a straight-line fit on "
             "log #params; top-10: tau among the 10 best by truth; s/genome: seconds per genome.", "",
             "![estimate rank against truth rank](ranking.png)", "", "## Headline entries", "", head, rule]
    lines += [row(n) for n in HEADLINE if n in est]
    lines += ["", "## Every entry", "", head, rule] + [row(n) for n in est]
    return "\n".join(lines) + "\n"


def ranking_figure(doc: dict, sets: dict, path: Path, names: list[str] = HEADLINE) -> None:
    """Rank by estimate against rank by truth, one panel per entry of ``names``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import rankdata

    truth = {s: np.array([np.mean(e["acc"][:2]) for e in common.with_truth(sets, s)]) for s in ("broad", "lineage")}
    names = [n for n in names if n in doc.get("estimates", {})]
    cols = 4
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for s, colour in (("broad", "tab:blue"), ("lineage", "tab:orange")):
            est = np.array([np.nan if v is None else v for v in doc["estimates"][name].get(s, [])], dtype=float)
            if len(est) != len(truth[s]):
                continue
            est = np.where(np.isfinite(est), est, -np.inf)  # a failed estimate ranks last
            n = len(est)
            tau = doc["estimators"].get(name, {}).get("kendall_tau" if s == "broad" else "lineage_kendall_tau")
            ax.scatter(rankdata(truth[s]) / n, rankdata(est) / n, s=8, c=colour, alpha=0.7,
                       label=f"{s} {_fmt(tau)}")
        ax.plot([0, 1], [0, 1], c="grey", lw=0.5)
        ax.set_title(name, fontsize=8)
        ax.legend(fontsize=7, loc="upper left", title="tau", title_fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.supxlabel("rank by truth (fraction)")
    fig.supylabel("rank by estimate (fraction)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


KERNELS = ("dense", "masked", "csr", "auto")


def kernel_page(doc: dict) -> str:
    """``kernel.md``: the summary figures and the 2048 x 2048 rows."""
    keys = ["auto_max_ratio", "inference_speedup_2pct", "inference_speedup_5pct", "derived_threshold_infer",
            "derived_threshold_train", "shapes_auto_regret_mean", "shapes_auto_regret_max",
            "shapes_density_only_regret_mean", "shapes_density_only_regret_max", "genomes_speedup_infer",
            "genomes_speedup_train"]
    lines = ["# Kernel: masked-dense against CSR", "",
             "Made by `python -m benchmarks.kernel` (`benchmarks/results/kernel.json`; "
             f"{doc.get('device')}, {doc.get('threads')} threads, torch {doc.get('torch')}, batch {doc.get('batch')}).",
             "", "![seconds per call against density](kernel.png)", "", "| key | value |", "|---|---|"]
    lines += [f"| `{k}` | {_fmt(doc[k])} |" for k in keys if k in doc]
    lines += ["", f"Rule in use (`rule_in_use`): `{json.dumps(doc.get('rule_in_use'))}`", "",
              f"## {doc.get('n')} x {doc.get('n')} pair (`rows`): milliseconds per call", "",
              "| density | auto picks | " + " | ".join(f"{k} {m}" for m in ("infer", "train") for k in KERNELS) + " |",
              "|---" * (2 + 2 * len(KERNELS)) + "|"]
    for r in doc.get("rows", []):
        sec = r["seconds"]
        lines.append(f"| {r['density']:.2f} | {r.get('auto_kernel', '')} | "
                     + " | ".join(_fmt(1e3 * sec[f"{k}_{m}"]) for m in ("infer", "train") for k in KERNELS) + " |")
    return "\n".join(lines) + "\n"


def kernel_figure(doc: dict, path: Path) -> None:
    """Seconds per call against density, inference and training, one line per kernel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc.get("rows", [])
    density = [r["density"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, mode in zip(axes, ("infer", "train")):
        for k in KERNELS:
            ax.plot(density, [1e3 * r["seconds"][f"{k}_{mode}"] for r in rows], marker="o", ms=3, label=k)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("density")
        ax.set_title(f"{doc.get('n')} x {doc.get('n')}, batch {doc.get('batch')}: {mode}", fontsize=9)
    axes[0].set_ylabel("ms per call")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(results: Path = common.RESULTS) -> None:
    import argparse

    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    doc = common.read_results("ranking", results)
    summary = {k: v for k, v in doc.items() if k != "estimates"}
    common.write_results("ranking", summary, raw={"estimates": doc.get("estimates", {})},
                         page=ranking_page(summary), results=results)
    ranking_figure(doc, common.load_ranking_sets(), results / "ranking.png")
    kernel = json.loads((results / "kernel.json").read_text())
    common.write_results("kernel", kernel, page=kernel_page(kernel), results=results)
    kernel_figure(kernel, results / "kernel.png")
    for path in sorted(results.glob("*.json")):  # the others: a plain page of their numbers
        if path.stem not in ("ranking", "kernel") and not path.stem.startswith("search_cost"):
            (results / f"{path.stem}.md").write_text(common.summary_page(path.stem, json.loads(path.read_text())))
    print(f"wrote ranking and kernel pages and pictures under {results}")


if __name__ == "__main__":
    main()
