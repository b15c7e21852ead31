"""benchmarks/early_stop_replay.py: a rule replayed over a hand-made stream of learning curves."""
import pytest

from benchmarks.early_stop_replay import replay
from evolution.curves import StopRule

CHECKS = [0.5]


def stream():
    # eight genomes that gain 0.2 from the check to the end calibrate the rule; the front is (0.9, 1k)
    rows = [{"flops": 1_000 * (i + 1), "accs": [0.7 - 0.01 * i], "final": 0.9 - 0.01 * i} for i in range(8)]
    rows.append({"flops": 5_000, "accs": [0.5], "final": 0.7})    # projected 0.7 at 5k: dominated, stopped
    rows.append({"flops": 500, "accs": [0.5], "final": 0.7})      # the cheapest yet: never stopped
    rows.append({"flops": 6_000, "accs": [0.5], "final": 0.95})   # a late bloomer at 6k: stopped wrongly
    return rows


def test_replay_stops_the_dominated_keeps_the_cheapest_and_counts_a_late_bloomer_as_wrong():
    out = replay(stream(), StopRule(calibrate=8, slack=0.0, quantile=1.0, projection="gain"), CHECKS)
    assert out["stopped"] == pytest.approx(2 / 11) and out["steps_saved"] == pytest.approx(2 * 0.5 / 11)
    assert out["n_stopped"] == 2 and out["n_wrong"] == 1            # the 6k genome would have been on the front
    assert (0.7, 500) in out["archive"] and (0.95, 6_000) not in out["archive"]


def test_nothing_is_stopped_before_calibration():
    out = replay(stream()[:3] + stream()[8:], StopRule(calibrate=8, slack=0.0), CHECKS)
    assert out["stopped"] == 0 and out["steps_saved"] == 0
    assert sorted(out["archive"]) == [(0.7, 500), (0.9, 1_000), (0.95, 6_000)]  # all trained to the end
