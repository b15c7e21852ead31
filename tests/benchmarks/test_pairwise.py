"""The cost-aware ranking measures of benchmarks/pairwise.py."""
import numpy as np
import pytest

from benchmarks import pairwise


def test_pairwise_counts_agreements_and_half_ties():
    truth = np.array([0.1, 0.2, 0.3])
    pairs = np.array([[0, 1], [0, 2], [1, 2]])
    assert pairwise.pairwise(truth, truth, pairs) == 1.0
    assert pairwise.pairwise(-truth, truth, pairs) == 0.0
    assert pairwise.pairwise(np.array([0.0, 0.0, 1.0]), truth, pairs) == (0.5 + 1 + 1) / 3


def test_iso_pairs_stay_within_a_level():
    pairs = pairwise.iso_pairs(np.array([2000, 2000, 20000, 20000, 20000]))
    assert pairs.tolist() == [[0, 1], [2, 3], [2, 4], [3, 4]]


def test_iso_bootstrap_brackets_the_figure_and_is_seeded():
    rng = np.random.default_rng(0)
    levels = np.repeat([2000, 20000, 100000], 20)
    quality = rng.normal(size=60)
    seeds = quality[:, None] + 0.5 * rng.normal(size=(60, 4))
    truth = seeds.mean(1)
    perfect = pairwise.iso_bootstrap(truth, truth, seeds, levels, n=200)
    assert perfect["iso_vs_ceiling_p5"] > 1.0 and perfect["iso_vs_ceiling_share_below_0.8"] == 0.0
    backwards = pairwise.iso_bootstrap(-truth, truth, seeds, levels, n=200)
    assert backwards["iso_vs_ceiling_p95"] == 0.0 and backwards["iso_vs_ceiling_share_below_0.8"] == 1.0
    noisy = quality + 1.5 * rng.normal(size=60)
    b = pairwise.iso_bootstrap(noisy, truth, seeds, levels, n=300)
    whole = pairwise.cost_aware(noisy, truth, seeds, pairwise.iso_pairs(levels), "iso")["iso_pairwise_vs_ceiling"]
    assert b["iso_vs_ceiling_p5"] < whole < b["iso_vs_ceiling_p95"]
    again = pairwise.iso_bootstrap(noisy, truth, seeds, levels, n=300)
    assert np.array_equal(b.pop("ratios"), again.pop("ratios")) and b == again


def test_iso_bootstrap_takes_estimate_and_ceiling_on_the_same_pairs():
    """The ceiling's own estimator (seeds 2, 3 against the truth of seeds 0, 1) is at 1.0 of it on
    every resample, genomes without all four seeds left out of both."""
    rng = np.random.default_rng(1)
    levels = np.repeat([2000, 20000, 100000], 16)
    seeds = rng.normal(size=48)[:, None] + 0.7 * rng.normal(size=(48, 4))
    seeds[[3, 25, 47], 2:] = np.nan
    b = pairwise.iso_bootstrap(seeds[:, 2:4].mean(1), seeds[:, :2].mean(1), seeds, levels, n=100)
    assert b["iso_vs_ceiling_p5"] == b["iso_vs_ceiling_p95"] == 1.0


def test_extended_iso_appends_per_level_and_refuses_another_draw():
    from benchmarks.ranking_sets import ISO_LEVELS, extended_iso

    def draw(per_level):
        return [{"genome": f"{v}-{i}", "level": v} for v in ISO_LEVELS for i in range(per_level)]

    grown = extended_iso(draw(2), draw(4), 4)
    assert grown[:6] == draw(2) and len(grown) == 12
    again = extended_iso(grown, draw(6), 6)  # a second growth: the saved order is no longer iso_set's
    assert again[:12] == grown and sorted(e["genome"] for e in again) == sorted(e["genome"] for e in draw(6))
    assert extended_iso(again, draw(6), 6) == again
    tampered = [dict(e) for e in grown]
    tampered[9]["genome"] = "other"  # 20000-3, appended by the first growth
    with pytest.raises(SystemExit, match="20000-FLOPs genomes are not what iso_set draws now"):
        extended_iso(tampered, draw(6), 6)


def test_halving_scores_one_halving_per_level_on_the_iso_set(monkeypatch):
    from types import SimpleNamespace

    from benchmarks import ranking_cheap

    batches = []

    class Fake:
        def __init__(self, *a, **k):
            self.calls = 0

        def estimate(self, gs):
            self.calls += 1
            batches.append((id(self), list(gs)))
            return [SimpleNamespace(score=float(g) + self.calls) for g in gs]

    monkeypatch.setattr(ranking_cheap, "HalvingEstimator", Fake)
    monkeypatch.setattr(ranking_cheap, "cost", SimpleNamespace(flops=lambda g: SimpleNamespace(total=g)))
    gs = [2000, 20500, 1990, 99000, 2010, 20000]
    out = ranking_cheap.halving_scores(None, gs, 8, by_level=True)
    assert [b for _, b in batches] == [[2000, 1990, 2010], [20500, 20000], [99000]]
    assert len({i for i, _ in batches}) == 3 and out == [g + 1.0 for g in gs]
    batches.clear()
    ranking_cheap.halving_scores(None, gs, 4)  # a search's generations: consecutive, one estimator
    assert [b for _, b in batches] == [gs[:4], gs[4:]] and len({i for i, _ in batches}) == 1


def test_iso_holdout_pairs_are_the_later_genomes_of_one_level():
    """The held-out part of the iso set: a level's entries counted in saved order (a grown set
    appends each level's new genomes after all levels' old ones), pairs among index >= 48 only."""
    levels = np.array([2000] * 48 + [20000] * 48 + [2000] * 3 + [20000] * 2)
    index = pairwise.level_index(levels.tolist())
    assert index[:48].tolist() == list(range(48)) and index[96:].tolist() == [48, 49, 50, 48, 49]
    assert pairwise.pairs_among(levels, index >= 48).tolist() == [[96, 97], [96, 98], [97, 98], [99, 100]]
    first = pairwise.pairs_among(levels, index < 48)
    assert len(first) == 2 * 48 * 47 // 2 and (first < 96).all()
    assert (levels[first[:, 0]] == levels[first[:, 1]]).all()


def test_ranking_cheap_page_reads_a_summary_without_an_iso_set_and_one_with_its_held_out_part():
    from benchmarks.ranking_cheap_page import page

    fits = {"predictor_gbr": [{"iso_pairwise_vs_ceiling": 0.8}, {"iso_pairwise_vs_ceiling": 0.82}]}
    doc = {"sets": {"broad": {"genomes": 60, "genomes_with_4_seeds": 60}}, "ceiling": {"iso_pairwise": None, "kind": "k"},
           "estimators": {"edges": {"kendall_tau": 0.9}}, "iso_holdouts": [], "gbr_bag_iso_vs_ceiling_by_seeds": {},
           "gbr_iso_vs_ceiling_by_fit_seed": fits}
    text = page(doc)
    assert "iso pairwise -, broad near-cost -, lineage near-cost -." in text and "its first part / its held-out part" in text
    assert "| predictor_gbr | 0.800 / - / - | 0.800 / - / - | 0.820 / - / - |" in text  # fit 0, mean, bagged
    assert "Held-out part of the iso set" not in text and "still move" not in text
    rows = [{"iso_pairwise_vs_ceiling": v, "iso_holdout_pairwise_vs_ceiling": v + 0.1,
             "iso_holdout2_pairwise_vs_ceiling": v - 0.1} for v in (0.7, 0.8, 0.9)]
    doc["estimators"]["edges"].update(iso_holdout2_pairwise=0.6, iso_holdout2_pairwise_vs_ceiling=0.7,
                                      iso_holdout2_before_pairwise_vs_ceiling=0.75)
    doc["iso_first_below"] = 96
    fits["predictor_gbr"] = [dict(r, iso_holdout2_pairwise_vs_ceiling=0.5) for r in fits["predictor_gbr"]]
    boot = {"edges": {"iso_vs_ceiling_p5": 0.6, "iso_vs_ceiling_p95": 0.8, "iso_vs_ceiling_share_below_0.8": 0.9}}
    doc.update(iso_holdouts=[{"key": "iso_holdout", "genomes": 144, "from_index": 96, "to_index": 144, "preregistered": "a",
                              "ceiling": 0.84, "bootstrap": {}},
                             {"key": "iso_holdout2", "genomes": 144, "from_index": 144, "to_index": 192,
                              "preregistered": "edges", "ceiling": 0.85, "bootstrap": boot}],
               gbr_bag_iso_vs_ceiling_by_seeds={"single_fits": rows, "bags": rows[1:]})
    text = page(doc)
    assert "| bags | 0.800-0.900 (SD 0.050) | - | 0.900-1.000 (SD 0.050) | 0.700-0.800 (SD 0.050) |" in text
    assert "| | whole set | first 96 per level | 96-143 | 144-191 |" in text
    assert "of index 96-143 in each level were drawn and trained after **a** had been chosen" in text
    assert "of index 144-191 in each level were drawn and trained after **edges** had been chosen" in text
    assert "| edges | 0.600 | 0.700 | 0.750 | 0.600 | 0.800 | 0.90 |" in text
    assert "| predictor_gbr | 0.800 / - / - / 0.500 | 0.800 / - / - / 0.500 | 0.820 / - / - / 0.500 |" in text
    assert "its first 96 per level / genomes 96-143 / genomes 144-191;" in text
    # only the second part present: its column is its own, not the first part's
    doc["iso_holdouts"] = doc["iso_holdouts"][1:]
    text = page(doc)
    assert "| | whole set | first 96 per level | 144-191 |" in text
    assert "| bags | 0.800-0.900 (SD 0.050) | - | 0.700-0.800 (SD 0.050) |" in text
