"""Genome samplers drawing edges by the edge law ``exp(-d / (4 + 1.5 l))``.

Used to seed a search and to train weight-sharing estimators on random sub-genomes.
"""
from __future__ import annotations

import numpy as np

from evolution.genome import Genome, SearchSpace


def _scale_to_density(law: np.ndarray, density: float) -> np.ndarray:
    """Probabilities ``min(1, s * law)`` with ``s`` set by bisection so their mean is ``density``."""
    if density >= 1.0:
        return np.ones_like(law)
    lo, hi = 0.0, 1.0
    while np.minimum(1.0, hi * law).mean() < density:
        hi *= 2.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.minimum(1.0, mid * law).mean() < density else (lo, mid)
    return np.minimum(1.0, hi * law)


def law_edges(space: SearchSpace, src: np.ndarray, dst: np.ndarray, density: float,
              rng: np.random.Generator) -> np.ndarray:
    """Draw edges between two neuron sets: each pair with probability proportional to the edge law
    (uniform into the outputs), scaled so a fraction ``density`` of the pairs is drawn. ``(e, 2)``."""
    s, d = np.meshgrid(src, dst, indexing="ij")
    s, d = s.ravel(), d.ravel()
    law = np.ones(len(s)) if space.level[dst[0]] == space.output_level else space.edge_law(s, d)
    keep = rng.random(len(s)) < _scale_to_density(law, density)
    return np.stack([s[keep], d[keep]], 1)


def random_genome(space: SearchSpace, rng: np.random.Generator, density: float = 0.1,
                  n_levels: int | None = None, fill: tuple[float, float] = (0.25, 1.0),
                  skip: float = 0.0, tries: int = 20) -> Genome:
    """A random genome: ``n_levels`` random hidden levels (default 1..levels), each holding a
    uniform ``fill`` fraction of its slots, consecutive levels joined at ``density`` by the edge law,
    non-consecutive ones at ``skip * density``. Pruned and canonical; retried until some input
    reaches an output."""
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density {density}: expected a fraction in (0, 1]")
    for _ in range(tries):
        k = int(rng.integers(0, space.levels + 1)) if n_levels is None else n_levels
        chosen = np.sort(rng.choice(np.arange(1, space.levels + 1), size=k, replace=False))
        groups = [space.inputs]
        for level in chosen:
            n = max(1, int(round(rng.uniform(*fill) * space.width)))
            groups.append(np.sort(space.level_slots(level)[rng.choice(space.width, n, replace=False)]))
        groups.append(space.outputs)
        edges = []
        for i in range(len(groups) - 1):
            for j in range(i + 1, len(groups)):
                dens = density if j == i + 1 else skip * density
                if dens > 0:
                    edges.append(law_edges(space, groups[i], groups[j], dens, rng))
        hidden = np.concatenate(groups[1:-1]) if k else np.zeros(0, dtype=np.int64)
        genome = Genome(space, hidden, np.concatenate(edges)).pruned().canonical()
        if genome.n_edges and np.isin(space.outputs, genome.edges[:, 1]).any():
            return genome
    raise ValueError(f"random_genome: no input reached an output in {tries} tries at density {density}")
