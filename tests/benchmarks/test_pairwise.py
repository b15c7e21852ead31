"""The cost-aware ranking measures of benchmarks/pairwise.py."""
import numpy as np

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
    assert b == pairwise.iso_bootstrap(noisy, truth, seeds, levels, n=300)
