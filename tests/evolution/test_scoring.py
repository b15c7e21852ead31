"""The helpers the estimators share (evolution.scoring), and the names the estimators' hub still exports."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from evolution.scoring import accuracy, correct_counts, load_update_state, population_update, update_state


def test_chunked_counts_add_up_across_chunks_per_network():
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    always_zero = lambda x: F.one_hot(torch.zeros(len(x), dtype=torch.long), 3).float()
    perfect = lambda x: F.one_hot(x[:, 0].long(), 3).float()
    x = y[:, None].float()
    seen = []
    spy = lambda x: seen.append(len(x)) or perfect(x)
    counts = correct_counts([always_zero, spy], x, y, chunk=3)
    assert counts.tolist() == [3, 7] and counts.dtype == torch.long and seen == [3, 3, 1]
    assert accuracy(always_zero, x, y, chunk=2) == 3 / 7


def _toy(lr: float = 0.1, seed: int = 0):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))
    return model, opt, np.random.default_rng(seed), (x, y)


def _update(model, opt, rng, train, lr=0.1, steps=3):
    loss = lambda genomes, x, y: F.cross_entropy(model(x), y)
    population_update(opt, lr, steps, rng, ["a", "b", "c"], 2, train, 8, loss, "toy update")


def test_a_saved_update_state_is_a_snapshot_and_resumes_exactly():
    model, opt, rng, train = _toy()
    _update(model, opt, rng, train)
    saved = update_state("toy", model, rng, opt)
    before = saved["toy"]["weight"].clone()
    _update(model, opt, rng, train)
    assert torch.equal(saved["toy"]["weight"], before) and not torch.equal(model.weight.detach(), before)
    twin, twin_opt, twin_rng, _ = _toy(seed=99)
    load_update_state(saved, "toy", twin, twin_rng, twin_opt)
    _update(twin, twin_opt, twin_rng, train)
    assert torch.equal(twin.weight, model.weight) and torch.equal(twin.bias, model.bias)


@pytest.mark.parametrize("steps, nan_at, message", [(3, 1, "at step 1"), (1, 1, "at step 1"), (2, 0, "at step 0")])
def test_a_diverging_update_is_one_line_naming_it(steps, nan_at, message):
    # nan_at == steps: only the check after the last step sees it (no step moved a weight on it).
    model, opt, rng, train = _toy()
    calls = []

    def loss(genomes, x, y):
        calls.append(1)
        return F.cross_entropy(model(x), y) * (float("nan") if len(calls) > nan_at else 1.0)

    with pytest.raises(FloatingPointError, match=rf"^toy update diverged {message}: loss is nan; lower the learning rate$"):
        population_update(opt, 0.1, steps, rng, ["a", "b"], 2, train, 8, loss, "toy update")
    assert len(calls) == nan_at + 1


def test_the_moved_names_are_still_importable_from_the_hub():
    from evolution import estimators, scoring, train_estimator

    for name in ("TrainEstimator", "train_job", "genome_seed"):
        assert getattr(estimators, name) is getattr(train_estimator, name)
    assert estimators.finite is scoring.finite and estimators.population_steps is scoring.population_steps
    with pytest.raises(ImportError, match="cannot import name 'NoSuchEstimator'"):
        from evolution.estimators import NoSuchEstimator  # noqa: F401
    # Either room may be imported first (train_estimator takes Estimate from the hub).
    code = "import evolution.train_estimator; from evolution.estimators import TrainEstimator, Estimate, finite"
    repo = str(Path(__file__).resolve().parents[2])
    subprocess.run([sys.executable, "-c", code], check=True, cwd=repo, env={**os.environ, "PYTHONPATH": repo})
