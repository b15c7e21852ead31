"""Genome samplers drawing edges by the edge law ``exp(-d / (4 + 1.5 l))``.

Used to seed a search and to train weight-sharing estimators on random sub-genomes.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from evolution.genome import Genome, SearchSpace


def _scale_to_density(law: np.ndarray, density: float) -> np.ndarray:
    """Probabilities ``min(1, s * law)`` with ``s`` set so their mean is ``density``."""
    if density >= 1.0:
        return np.ones_like(law)
    scale = density / law.mean()
    if scale * law.max() <= 1.0:  # nothing saturates: the scale is exact, no search needed
        return scale * law
    # mean(min(1, s * law)) is concave, piecewise linear and increasing in s, and the plain rescale
    # is below its root: Newton's steps stay below it and land on it once the set of saturated
    # pairs stops changing (a few steps, where bisection needs dozens of passes over the pairs).
    target = density * len(law)
    for _ in range(64):
        free = scale * law < 1.0
        rest = law[free].sum()
        if rest <= 0:  # every pair with a nonzero law saturates (the law underflows far away)
            return (law > 0).astype(law.dtype)
        short = target - (len(law) - np.count_nonzero(free)) - scale * rest
        if short <= 1e-12 * target:
            break
        scale += short / rest
    return np.minimum(1.0, scale * law)


def _whole_level(space: SearchSpace, level: int) -> np.ndarray:
    """Every neuron id of one level: the inputs, a hidden level's slots or the outputs."""
    if level == 0:
        return space.inputs
    return space.outputs if level == space.output_level else space.level_slots(level)


@lru_cache(maxsize=32)
def _level_law(space: SearchSpace, src_level: int, dst_level: int) -> np.ndarray:
    """The edge law between all slots of two levels, ``(slots of src_level, slots of dst_level)``,
    computed once per space: the positions are fixed, and recomputing the distances took over half
    of drawing a genome. Resident while cached: 8 bytes a pair (1.6 MB for the mnist grid's inputs
    to a 256-slot level, 6.3 MB for 3x32x32 inputs)."""
    src, dst = _whole_level(space, src_level), _whole_level(space, dst_level)
    offset = space.positions[src][:, None, :] - space.positions[dst][None, :, :]
    law = np.exp(np.sqrt((offset ** 2).sum(-1)) / -(4.0 + 1.5 * dst_level))
    law.flags.writeable = False  # shared by every call
    return law


def _slot_index(space: SearchSpace, ids: np.ndarray, level: int) -> np.ndarray:
    """Positions of neuron ``ids`` (all of one level) within that level's ids."""
    return ids if level == 0 else ids - space.hidden_id(level, 0)


def law_edges(space: SearchSpace, src: np.ndarray, dst: np.ndarray, density: float,
              rng: np.random.Generator) -> np.ndarray:
    """Draw edges between two sorted neuron sets, each within one level: each pair with probability
    proportional to the edge law (uniform into the outputs), scaled so a fraction ``density`` of
    the pairs is drawn. ``(e, 2)``."""
    src_level, dst_level = int(space.level[src[0]]), int(space.level[dst[0]])
    if dst_level == space.output_level:
        p: np.ndarray | float = min(1.0, density)
    else:
        full = _level_law(space, src_level, dst_level)
        rows = _slot_index(space, src, src_level)
        if not (len(rows) == full.shape[0] and (rows == np.arange(len(rows))).all()):  # not the whole level
            full = np.take(full, rows, axis=0)
        law = np.take(full, _slot_index(space, dst, dst_level), axis=1)  # take: 4x faster than np.ix_ here
        p = _scale_to_density(law.ravel(), density).reshape(law.shape)
    # Row-major flat indices (a meshgrid's order of the pairs): 3x faster than a 2-D nonzero.
    k = np.flatnonzero(rng.random((len(src), len(dst))) < p)
    i = k // len(dst)
    return np.stack([src[i], dst[k - i * len(dst)]], 1)


def random_genome(space: SearchSpace, rng: np.random.Generator, density: float = 0.1,
                  n_levels: int | None = None, fill: tuple[float, float] = (0.25, 1.0),
                  skip: float = 0.0, tries: int = 20) -> Genome:
    """A random genome: ``n_levels`` random hidden levels (default 0..levels; 0: inputs straight
    to outputs, as a search's seed genomes may be), each holding a
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


def _unit_hash(ids: np.ndarray, seed: int) -> np.ndarray:
    """A fixed uniform number in [0, 1) per id and seed (splitmix64), so keys need no storage."""
    # uint64 arithmetic wraps modulo 2^64 by design; numpy warns on scalar overflow, so silence it.
    with np.errstate(over="ignore"):
        z = np.asarray(ids, dtype=np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


@lru_cache(maxsize=32)
def _pair_keys(space: SearchSpace, src_level: int, dst_level: int, seed: int) -> np.ndarray:
    """The fixed key of every potential edge between two whole levels, row-major (computed once:
    hashing them took most of a nested draw)."""
    src, dst = _whole_level(space, src_level), _whole_level(space, dst_level)
    keys = _unit_hash(space.edge_id(src[:, None], dst[None, :]).ravel(), seed)
    keys.flags.writeable = False  # shared by every call
    return keys


def nested_genome(space: SearchSpace, density: float, fill: float, n_levels: int, seed: int = 0) -> Genome:
    """A genome from fixed keys: slot ``s`` is present when its key < ``fill``, edge ``e`` of two
    consecutive present levels when its key < ``min(1, c * law_e)`` (``c`` set on the full level pair
    for ``density``). Denser or fuller genomes of the same depth therefore contain sparser ones."""
    n_levels = int(np.clip(n_levels, 0, space.levels))
    groups = [space.inputs]
    for level in range(1, n_levels + 1):
        slots = space.level_slots(level)
        keep = _unit_hash(slots, seed) < fill
        keep[np.argmin(_unit_hash(slots, seed))] = True  # never an empty level
        groups.append(slots[keep])
    groups.append(space.outputs)
    edges = []
    for a, b in zip(groups, groups[1:]):
        la, lb = int(space.level[a[0]]), int(space.level[b[0]])
        full_a, full_b = _whole_level(space, la), _whole_level(space, lb)
        # uniform into the outputs, as law_edges draws them
        p = min(1.0, density) if lb == space.output_level else _scale_to_density(_level_law(space, la, lb).ravel(), density)
        on = (_pair_keys(space, la, lb, seed + 1) < p).reshape(len(full_a), len(full_b))
        on &= np.isin(full_a, a)[:, None] & np.isin(full_b, b)[None, :]
        k = np.flatnonzero(on)  # row-major, as the pairs of a meshgrid
        i = k // len(full_b)
        edges.append(np.stack([full_a[i], full_b[k - i * len(full_b)]], 1))
    hidden = np.concatenate(groups[1:-1]) if n_levels else np.zeros(0, dtype=np.int64)
    return Genome(space, hidden, np.concatenate(edges)).pruned().canonical()


class GenomeSampler:
    """Draws genomes to train weight-sharing estimators (supernet, hypernet) on.

    kinds: ``uniform`` (``random_genome``: random levels, slots and edges by the edge law),
    ``nested`` (``nested_genome``: fixed keys, denser genomes contain sparser ones), ``sandwich``
    (the largest, the smallest and random ones in every draw, as BigNAS / OFA train), ``fair``
    (``k`` genomes that split every level's slots between them, so each slot trains once per draw,
    as FairNAS does for operations). Densities are drawn log-uniformly from ``density``; with
    ``skip`` (``uniform`` and ``fair``), each genome also joins non-consecutive levels at a factor
    drawn uniformly from ``skip`` times its density, as a search's added edges do (``random_genome``).
    """

    KINDS = ("uniform", "nested", "sandwich", "fair")

    def __init__(self, space: SearchSpace, kind: str = "uniform", density: tuple[float, float] = (0.02, 0.3),
                 fill: tuple[float, float] = (0.25, 1.0), seed: int = 0, skip: tuple[float, float] = (0.0, 0.0)) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"sampler {kind!r}: expected one of {', '.join(self.KINDS)}")
        if not 0 <= skip[0] <= skip[1]:
            raise ValueError(f"skip range {tuple(skip)}: expected 0 <= low <= high")
        if skip[1] > 0 and kind in ("nested", "sandwich"):
            raise ValueError(f"skip {tuple(skip)}: the {kind} sampler's fixed keys join consecutive levels only; "
                             "use the uniform or fair sampler")
        if not 0 < density[0] <= density[1] <= 1:
            raise ValueError(f"density range {density}: expected 0 < low <= high <= 1")
        if space.levels < 1:
            raise ValueError(f"levels {space.levels}: the genome samplers need a space with at least one hidden level")
        self.space, self.kind, self.density, self.fill, self.seed = space, kind, tuple(density), tuple(fill), seed
        self.skip = tuple(skip)

    def _density(self, rng: np.random.Generator) -> float:
        lo, hi = np.log(self.density[0]), np.log(self.density[1])
        return float(np.exp(rng.uniform(lo, hi)))

    def _skip(self, rng: np.random.Generator) -> float:
        # No draw without skip, so the stream (and every genome drawn) is what it was before skip.
        return float(rng.uniform(*self.skip)) if self.skip[1] > 0 else 0.0

    def largest(self) -> Genome:
        return nested_genome(self.space, self.density[1], self.fill[1], self.space.levels, self.seed)

    def smallest(self) -> Genome:
        return nested_genome(self.space, self.density[0], self.fill[0], 1, self.seed)

    def sample(self, rng: np.random.Generator, k: int) -> list[Genome]:
        """``k`` genomes (for ``sandwich``: the largest, the smallest, then ``k - 2`` random)."""
        sp = self.space
        if self.kind == "uniform":
            return [random_genome(sp, rng, density=self._density(rng), fill=self.fill, skip=self._skip(rng))
                    for _ in range(k)]
        if self.kind == "nested":
            return [nested_genome(sp, self._density(rng), rng.uniform(*self.fill), int(rng.integers(1, sp.levels + 1)),
                                  self.seed) for _ in range(k)]
        if self.kind == "sandwich":
            extremes = [self.largest(), self.smallest()][:k]
            return extremes + [nested_genome(sp, self._density(rng), rng.uniform(*self.fill),
                                             int(rng.integers(1, sp.levels + 1)), self.seed) for _ in range(k - 2)]
        # fair: level by level, a random partition of the slots into k parts.
        parts = [np.array_split(rng.permutation(sp.level_slots(l)), k) for l in range(1, sp.levels + 1)]
        out = []
        for i in range(k):
            groups = [sp.inputs] + [np.sort(p[i]) for p in parts if len(p[i])] + [sp.outputs]
            d, skip = self._density(rng), self._skip(rng)
            edges = [law_edges(sp, a, b, d if hi == lo + 1 else skip * d, rng)
                     for lo, a in enumerate(groups) for hi, b in enumerate(groups) if hi == lo + 1 or (hi > lo + 1 and skip)]
            hidden = np.concatenate(groups[1:-1]) if len(groups) > 2 else np.zeros(0, dtype=np.int64)
            out.append(Genome(sp, hidden, np.concatenate(edges)).pruned().canonical())
        return out
