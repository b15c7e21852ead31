"""The page of ``benchmarks/ranking_cheap.py``: its JSON summary as tables (``ranking_cheap.md``)."""
from __future__ import annotations

import numpy as np

FIT_COLS = ("iso_pairwise_vs_ceiling", "iso_first_pairwise_vs_ceiling")  # then one per held-out part


def _num(v) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.3f}"


def _spread(values: list) -> str:
    v = [x for x in values if x is not None]
    return f"{min(v):.3f}-{max(v):.3f} (SD {np.std(v):.3f})" if v else "-"


def page(doc: dict) -> str:
    """One table over all sets: tau, cost-aware pairwise accuracy (and its fraction of the ceiling),
    top-10, seconds per genome."""
    c = doc["ceiling"]
    cols = [("iso_pairwise", "iso pairwise"), ("iso_pairwise_vs_ceiling", "/ceiling"), ("iso_kendall_tau", "iso tau"),
            ("near_cost_pairwise", "broad near-cost"), ("near_cost_pairwise_vs_ceiling", "/ceiling"),
            ("lineage_near_cost_pairwise", "lineage near-cost"), ("lineage_near_cost_pairwise_vs_ceiling", "/ceiling"),
            ("kendall_tau", "broad tau"), ("lineage_kendall_tau", "lineage tau"), ("top10_tau", "broad top-10 tau"),
            ("precision_at_10", "broad P@10"), ("iso_seconds_per_genome", "s/genome (iso)")]
    lines = ["# Cheap estimators on the ranking sets", "",
             "Made by `python -m benchmarks.ranking_cheap` (`benchmarks/results/ranking_cheap.json`). Sets: "
             + ", ".join(f"{n} {v['genomes']} genomes ({v['genomes_with_4_seeds']} with 4 truth seeds)" for n, v in doc["sets"].items())
             + f". Ceilings ({c['kind']}): iso pairwise {_num(c.get('iso_pairwise'))}, broad near-cost "
             f"{_num(c.get('broad_near_cost_pairwise'))}, lineage near-cost "
             f"{_num(c.get('lineage_near_cost_pairwise'))}.", "",
             "| estimator | " + " | ".join(h for _, h in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for key, m in doc["estimators"].items():
        cells = []
        for k, _ in cols:
            v = m.get(k)
            cells.append("-" if v is None or not np.isfinite(v) else f"{v:.3f}" if "seconds" not in k else f"{v:.4f}")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    grid = doc.get("pairwise_naswot_iso_vs_ceiling_by_setting") or {}
    if all(grid.values()) and grid:
        lines += ["", "predictor_pairwise+naswot on the iso set (`iso_pairwise_vs_ceiling`) by its settings "
                  "(`pairwise_naswot_iso_vs_ceiling_by_setting`; defaults c 1, window 0.25):", "",
                  "| c | window | pairs from all sets | pairs within each set |", "|---|---|---|---|"]
        for k, v in grid.items():
            c, w = k.removeprefix("c").split("_window")
            lines.append(f"| {c} | {w} | {v['all']:.3f} | {v['within_set']:.3f} |")
        vals = [x for v in grid.values() for x in v.values()]
        lines.append(f"\nRange {min(vals):.3f}-{max(vals):.3f}, median {float(np.median(vals)):.3f}.")
    boot = doc.get("iso_bootstrap") or {}
    if boot:
        n = next(iter(boot["entries"].values()))["resamples"]
        lines += ["", f"How much the iso figure owes to which genomes the set holds (`iso_bootstrap`): the genomes "
                  f"resampled within each level, {n:,} times, and on each resample the estimate's share (its scores "
                  "as they are; predictors not refit) and the ceiling taken again on the same pairs. The last column "
                  f"is paired: the share of resamples on which the entry is at or above the best by the figure "
                  f"({boot['best']}).", "",
                  "| estimator | iso /ceiling | 5th percentile | 95th percentile | resamples below 0.8 | at or above the best |",
                  "|---|---|---|---|---|---|"]
        for key, b in boot["entries"].items():
            ahead = "-" if b["at_or_above_best"] is None else f"{b['at_or_above_best']:.2f}"
            lines.append(f"| {key} | {doc['estimators'][key]['iso_pairwise_vs_ceiling']:.3f} | {b['iso_vs_ceiling_p5']:.3f} "
                         f"| {b['iso_vs_ceiling_p95']:.3f} | {b['iso_vs_ceiling_share_below_0.8']:.2f} | {ahead} |")
    fits = doc.get("gbr_iso_vs_ceiling_by_fit_seed") or {}
    holds = doc.get("iso_holdouts") or []
    first = f"{doc['iso_first_below']} per level" if doc.get("iso_first_below") else "part"
    parts = " / ".join(f"genomes {h['from_index']}-{h['to_index'] - 1}" for h in holds) or "its held-out part"
    fit_cols = FIT_COLS + (tuple(f"{h['key']}_pairwise_vs_ceiling" for h in holds) or ("iso_holdout_pairwise_vs_ceiling",))
    if fits:
        n = len(next(iter(fits.values()))) - 1
        lines += ["", "The gradient-boosted predictors' iso figures by the seed of the fit (`gbr_iso_vs_ceiling_by_fit_seed`: "
                  f"fits 0-{n - 1}, each drawing its own 0.8 subsamples; the tables above use fit 0), on the whole set / "
                  f"its first {first} / {parts}; `mean figure`: the mean of the fits' "
                  "figures; `bagged`: the figure of the mean of the fits' predictions:", "",
                  "| estimator | " + " | ".join(f"fit {i}" for i in range(n)) + " | mean figure | bagged |",
                  "|---" * (n + 3) + "|"]
        for key, rows in fits.items():
            cells = [" / ".join(_num(r.get(k)) for k in fit_cols) for r in rows]
            vals = [[r[k] for r in rows[:-1] if r.get(k) is not None] for k in fit_cols]
            mean = " / ".join(_num(float(np.mean(v)) if v else None) for v in vals)
            lines.append(f"| {key} | " + " | ".join(cells[:-1]) + f" | {mean} | {cells[-1]} |")
    spread = doc.get("gbr_bag_iso_vs_ceiling_by_seeds") or {}
    if spread and spread.get("bags"):
        n, k = len(spread["single_fits"]), len(spread["single_fits"]) // len(spread["bags"])
        lines += ["", f"How much predictor_gbr's figures still move with its seeds (`gbr_bag_iso_vs_ceiling_by_seeds`): "
                  f"{n} single fits (seeds 0-{n - 1}) and the {len(spread['bags'])} bags of {k} among them (seeds 0-{k - 1}, "
                  f"{k}-{2 * k - 1}, ...; the first is `predictor_gbr_bag`); range of the figure and its standard deviation:", "",
                  f"| | whole set | first {first} | " + (" | ".join(f"{h['from_index']}-{h['to_index'] - 1}" for h in holds)
                                                           or "held-out part") + " |", "|---" * len(fit_cols) + "|---|"]
        for name, rows in (("single fits", spread["single_fits"]), ("bags", spread["bags"])):
            lines.append(f"| {name} | " + " | ".join(_spread([r.get(c) for r in rows]) for c in fit_cols) + " |")
    for hold in holds:
        key = hold["key"]
        lines += ["", f"Held-out part of the iso set (`iso_holdouts`, `{key}`): its {hold['genomes']} genomes "
                  f"({hold['genomes'] // 3} per level) of index {hold['from_index']}-{hold['to_index'] - 1} in each level "
                  f"were drawn and trained after **{hold['preregistered']}** had been chosen on the genomes before "
                  f"them, so its figure here is free of that choice. Pairs within a level among these genomes only; "
                  f"ceiling {hold['ceiling']:.3f}; percentiles by the same resampling procedure as above (its own "
                  "resamples); `before /ceiling`: the same entry on the pairs among the genomes before "
                  f"{hold['from_index']} (those it was chosen on), as fitted now.", "",
                  "| estimator | held-out iso pairwise | /ceiling | before /ceiling | 5th percentile | 95th percentile "
                  "| resamples below 0.8 |", "|---|---|---|---|---|---|---|"]
        for name, b in hold["bootstrap"].items():
            m = doc["estimators"][name]
            lines.append(f"| {name} | {_num(m.get(f'{key}_pairwise'))} | {_num(m.get(f'{key}_pairwise_vs_ceiling'))} "
                         f"| {_num(m.get(f'{key}_before_pairwise_vs_ceiling'))} "
                         f"| {b['iso_vs_ceiling_p5']:.3f} | {b['iso_vs_ceiling_p95']:.3f} "
                         f"| {b['iso_vs_ceiling_share_below_0.8']:.2f} |")
    return "\n".join(lines) + "\n"

