import numpy as np
import pytest
import torch

from evolution.batched import concat, genome_levels, stack, stacked_forward, stacked_levels
from evolution.genome import Genome, SearchSpace
from evolution.mutations import tie_weights
from evolution.network import compile, level_outputs, sparse_forward
from evolution.sampling import GenomeSampler
from oneshot.supernet import Supernet

SPACE = SearchSpace((1, 8, 8), 5, levels=3, width=12)


def _genomes(seed: int = 0) -> list[Genome]:
    """Draws of every depth and fill, with skip edges, one genome with tie groups and one that
    skips a whole grid level (its inputs feed level 2 directly)."""
    rng = np.random.default_rng(seed)
    gs = GenomeSampler(SPACE, "uniform", density=(0.05, 0.6), fill=(0.25, 1.0), skip=(0.5, 1.0)).sample(rng, 5)
    gs += GenomeSampler(SPACE, "sandwich", density=(0.05, 0.6)).sample(rng, 3)
    tied = max(gs, key=lambda g: g.n_edges)
    for _ in range(30):  # tie_weights also unties half the time once ties exist
        tied, _ = tie_weights(tied, rng)
        if tied.ties is not None and tied.n_weights < tied.n_edges - 3:
            break
    assert tied.ties is not None and tied.n_weights < tied.n_edges
    lvl2 = SPACE.n_inputs + SPACE.width  # first slot of grid level 2
    skipping = Genome(SPACE, [lvl2, lvl2 + 1], [[0, lvl2], [5, lvl2], [9, lvl2 + 1], [lvl2, SPACE.outputs[0]],
                                                [lvl2 + 1, SPACE.outputs[3]], [3, SPACE.outputs[1]]])
    return gs + [tied, skipping]


def test_stacked_outputs_and_gradients_match_the_per_genome_kernel():
    torch.manual_seed(0)
    sup = Supernet(SPACE, torch.Generator().manual_seed(1))
    with torch.no_grad():  # LayerNorm affine away from 1 / 0, so a misplaced gain or shift shows
        sup.norm_weight.uniform_(0.5, 1.5)
        sup.norm_bias.uniform_(-0.3, 0.3)
        sup.bias.uniform_(-0.3, 0.3)
    genomes = _genomes()
    x = torch.randn(7, 1, 8, 8, dtype=torch.float64)
    sup = sup.double()
    reference = [sparse_forward(sup.plan_for(g), sup.weights_for(g), x) for g in genomes]
    (sum((z * torch.arange(1.0, 6.0, dtype=z.dtype)).sum() for z in reference)).backward()
    expected = [p.grad.clone() for p in sup.parameters()]
    sup.zero_grad()
    logits = stacked_forward(stack(genomes), concat([sup.weights_for(g) for g in genomes]), x)
    assert logits.shape == (len(genomes), 7, 5)
    for got, want in zip(logits, reference):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    (logits * torch.arange(1.0, 6.0, dtype=logits.dtype)).sum().backward()
    for p, want in zip(sup.parameters(), expected):
        assert want.abs().sum() > 0
        torch.testing.assert_close(p.grad, want, rtol=1e-5, atol=1e-5)


def test_stacked_float32_and_bfloat16_stay_close():
    sup = Supernet(SPACE, torch.Generator().manual_seed(2))
    genomes = _genomes(3)
    x = torch.randn(64, 64)
    ref = torch.stack([sparse_forward(sup.plan_for(g), sup.weights_for(g), x) for g in genomes]).detach()
    s, w = stack(genomes), concat([sup.weights_for(g) for g in genomes])
    torch.testing.assert_close(stacked_forward(s, w, x).detach(), ref, rtol=1e-4, atol=1e-4)
    with torch.no_grad():  # scoring's in-place LayerNorm
        torch.testing.assert_close(stacked_forward(s, w, x), ref, rtol=1e-4, atol=1e-4)
    low = stacked_forward(s, w, x, torch.bfloat16).detach()
    assert low.dtype == torch.float32
    assert (low - ref).abs().max() < 0.1 and not torch.equal(low, ref)  # rounded, not lost


def test_genome_levels_are_the_per_genome_activations():
    sup = Supernet(SPACE, torch.Generator().manual_seed(4))
    genomes = _genomes(5)
    x = torch.randn(9, 64, dtype=torch.float64)
    sup = sup.double()
    s = stack(genomes)
    acts = stacked_levels(s, concat([sup.weights_for(g) for g in genomes]), x)
    for i, g in enumerate(genomes):
        plan = compile(g)
        want = level_outputs(plan, sup.weights_for(g), x)
        got = genome_levels(s, acts, i, plan)
        assert len(got) == len(want)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b)


def test_stack_refuses_mixed_grids_and_nothing():
    other = SearchSpace((1, 8, 8), 5, levels=2, width=12)
    with pytest.raises(ValueError, match="different grids"):
        stack([_genomes()[0], GenomeSampler(other).sample(np.random.default_rng(0), 1)[0]])
    with pytest.raises(ValueError, match="at least one genome"):
        stack([])
    with pytest.raises(ValueError, match="65 features; the genomes expect 64"):
        stacked_forward(stack(_genomes()[:2]), concat([Supernet(SPACE).weights_for(g) for g in _genomes()[:2]]),
                        torch.zeros(3, 65))
