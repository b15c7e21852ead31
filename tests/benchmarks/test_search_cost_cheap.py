from __future__ import annotations

import math

import numpy as np
from scipy import stats

from benchmarks.search_cost_cheap import _beat, paired


def test_paired_differences_give_their_standard_error_and_t_test():
    diff = np.array([0.1, 0.2, 0.3])
    out = paired(diff)
    assert math.isclose(out["se"], 0.1 / math.sqrt(3))
    t = 0.2 / (0.1 / math.sqrt(3))
    assert math.isclose(out["p"], 2 * stats.t.sf(t, df=2))
    assert paired(np.array([0.5])) == {}  # one seed: no spread to speak of
    assert paired(np.array([0.1, 0.1])) == {"se": 0.0, "p": 0.0}  # the same gain on every seed
    assert paired(np.array([0.0, 0.0])) == {"se": 0.0, "p": 1.0}
    line = _beat({"seeds": [0, 1, 2], "wins": 3, "mean_diff": 0.2, **out})
    assert line == "3/3 (+0.200 ± 0.058, p 0.074)"
    assert _beat({"seeds": [0, 1], "wins": 2, "mean_diff": 0.1, "se": 0.0, "p": 0.0}) == "2/2 (+0.100 ± 0.000, p < 0.001)"
    # a section written before the standard error was kept reads as it did
    assert _beat({"seeds": [0, 1], "wins": 1, "mean_diff": -0.01}) == "1/2 (-0.010)"
