from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from benchmarks.search_cost_cheap import _beat, paired


def test_paired_differences_give_their_standard_error_and_t_test():
    diff = np.array([0.1, 0.2, 0.3])
    out = paired(diff)
    assert math.isclose(out["se"], 0.1 / math.sqrt(3))
    t = 0.2 / (0.1 / math.sqrt(3))
    assert math.isclose(out["p"], 2 * stats.t.sf(t, df=2))
    half = 4.302653 * 0.1 / math.sqrt(3)  # t(0.975, 2 degrees of freedom)
    assert np.allclose(out["ci95"], [0.2 - half, 0.2 + half])
    assert paired(np.array([0.5])) == {}  # one seed: no spread to speak of
    assert paired(np.array([0.1, 0.1])) == {"se": 0.0, "p": 0.0, "ci95": [0.1, 0.1]}  # the same gain on every seed
    assert paired(np.array([0.0, 0.0])) == {"se": 0.0, "p": 1.0, "ci95": [0.0, 0.0]}
    line = _beat({"seeds": [0, 1, 2], "wins": 3, "mean_diff": 0.2, **out})
    assert line == "3/3 (+0.200 ± 0.058, p 0.074)"
    assert _beat({"seeds": [0, 1], "wins": 2, "mean_diff": 0.1, "se": 0.0, "p": 0.0}) == "2/2 (+0.100 ± 0.000, p < 0.001)"
    # a section written before the standard error was kept reads as it did
    assert _beat({"seeds": [0, 1], "wins": 1, "mean_diff": -0.01}) == "1/2 (-0.010)"


def test_a_section_names_the_budget_its_runs_had_and_refuses_another(tmp_path, monkeypatch, capsys):
    from benchmarks import search_cost_cheap as cheap

    work = tmp_path / "digits"
    for arm in ("supernet", "train-full", "moved-aside"):  # a folder that is no arm is not checked
        (work / arm).mkdir(parents=True)
    made = {"seeds": [0, 1], "reference_point": [1.0, 6.0], "arms": {
        "supernet": {"mean": {"cpu_seconds": 120.3}, "seeds": [{"seed": 0, "retrained_hv": 3.6, "cpu_seconds": 120.1},
                                                               {"seed": 1, "retrained_hv": 3.5, "cpu_seconds": 120.5}]},
        "train-full": {"mean": {"cpu_seconds": 1201.0}, "seeds": [{"seed": 0, "retrained_hv": 3.7, "cpu_seconds": 1201.0}]},
        "moved-aside": {"mean": {"cpu_seconds": 5.0}, "seeds": [{"seed": 0, "cpu_seconds": 5.0}]}}}
    monkeypatch.setattr(cheap.report, "collect", lambda *a: made)
    sec = cheap.section(work, "digits", tmp_path, budget=120)  # train-full at its 10x
    assert sec["budget_cpu_seconds"] == 120 and sec["arms"]["supernet"]["retrained_hv_by_seed"] == {"0": 3.6, "1": 3.5}
    # the references against each other, on the seeds both finished: the room above the default
    gap = sec["beats"]["train-full>supernet"]
    assert gap["seeds"] == [0] and gap["wins"] == 1 and math.isclose(gap["mean_diff"], 0.1) and "se" not in gap
    assert "supernet>train-low" not in sec["beats"]  # no train-low run: no comparison
    out = tmp_path / "cheap.json"
    assert cheap.main(["--work", str(tmp_path), "--presets", "digits", "--out", str(out)]) == 2  # the preset's 30
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "arm supernet seed 0 ran 120 CPU-s, not about 30" in err and "--budget" in err
    made["arms"]["supernet"]["seeds"][0]["cpu_seconds"] = 30.2  # one seed at another budget: refused by seed
    with pytest.raises(ValueError, match="arm supernet seed 0 ran 30 CPU-s, not about 120"):
        cheap.section(work, "digits", tmp_path, budget=120)
    assert cheap.main(["--work", str(tmp_path), "--presets", "digits", "--out", str(out), "--budget", "0"]) == 2
    assert "--budget 0.0: expected a positive" in capsys.readouterr().err
    assert not out.exists()
