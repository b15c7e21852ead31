"""Neuron-level mutation operators: ``(genome, rng) -> (child, Inheritance)``.

Following the neuron-level evolutionary search the seeds come from: a mutation adds or removes
roughly 10-30 % of the edges or neurons it touches; new edges are drawn by the edge law
``exp(-d / (4 + 1.5 l))`` (uniformly into the outputs), edges to remove by its inverse (or by small
weight magnitude when weights are known). Every child is validated, pruned and canonical.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evolution.genome import Genome, SearchSpace

FRACTION = (0.1, 0.3)


@dataclass(frozen=True)
class Inheritance:
    """How a child's weights follow from its parent's (see ``evolution.morphism.inherit``).

    Weights are keyed by edge and neuron id, so shared edges copy and new ones start at zero;
    ``duplicated`` lists ``(original, copy)`` neuron pairs of a Net2WiderNet split (the copy takes
    the original's incoming weights, and both halve their outgoing ones)."""

    mutation: str
    duplicated: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class MutationRates:
    """Relative chance of each operator (need not sum to 1; 0 disables one)."""

    add_neurons: float = 1.0
    add_edges: float = 1.0
    remove_edges: float = 1.0
    remove_level: float = 0.2
    duplicate_neuron: float = 0.5
    tie_weights: float = 0.3

    def __post_init__(self) -> None:
        values = list(self.__dict__.values())
        if min(values) < 0 or sum(values) <= 0:
            raise ValueError(f"mutation rates {self.__dict__}: expected non-negative rates with a positive sum")


def _level_groups(g: Genome) -> dict[int, np.ndarray]:
    """Present neurons per grid level, inputs and outputs included."""
    sp = g.space
    groups = {0: sp.inputs}
    for level in g.levels_present():
        groups[level] = g.hidden[sp.level[g.hidden] == level]
    groups[sp.output_level] = sp.outputs
    return groups


def _fraction(rng: np.random.Generator, n: int) -> int:
    return max(1, int(round(rng.uniform(*FRACTION) * n)))


def _law(sp: SearchSpace, src: np.ndarray, dst: np.ndarray, inverse: bool = False) -> np.ndarray:
    """Edge-law probabilities over the given edges (``inverse``: proportional to 1 / law); uniform
    into the output level, as the original draws output edges. Normalised in log space: on a wide
    input line (thousands of tabular features) the law itself underflows to 0 and its inverse to inf."""
    log = np.where(sp.level[dst] == sp.output_level, 0.0, sp.log_edge_law(src, dst)) * (-1 if inverse else 1)
    w = np.exp(log - log.max())
    return w / w.sum()


def _draw_new_edges(g: Genome, src: np.ndarray, dst: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``k`` edges between ``src`` and ``dst`` that ``g`` lacks, drawn by the edge law."""
    sp = g.space
    s, d = (a.ravel() for a in np.meshgrid(src, dst, indexing="ij"))
    free = ~np.isin(sp.edge_id(s, d), sp.edge_id(g.edges[:, 0], g.edges[:, 1]))
    s, d = s[free], d[free]
    if not len(s) or k <= 0:
        return np.zeros((0, 2), dtype=np.int64)
    pick = rng.choice(len(s), size=min(k, len(s)), replace=False, p=_law(sp, s, d))
    return np.stack([s[pick], d[pick]], 1)


def _child(g: Genome, hidden: np.ndarray, edges: np.ndarray, ties: np.ndarray | None) -> Genome:
    return Genome(g.space, np.sort(hidden), edges, ties).validate().pruned().canonical()


def _new_ties(g: Genome, n: int) -> np.ndarray | None:
    """Fresh tie labels for ``n`` new edges (None when the genome has no ties)."""
    if g.ties is None:
        return None
    start = int(g.ties.max()) + 1 if len(g.ties) else 0
    return np.arange(start, start + n)


def _append(g: Genome, new: np.ndarray, hidden: np.ndarray | None = None, new_ties: np.ndarray | None = None) -> Genome:
    ties = None if g.ties is None else np.concatenate([g.ties, _new_ties(g, len(new)) if new_ties is None else new_ties])
    return _child(g, g.hidden if hidden is None else hidden, np.concatenate([g.edges, new]), ties)


def _pairs(g: Genome, with_edges: bool) -> list[tuple[int, int]]:
    """Level pairs (lower, higher) among present levels; only those carrying edges if asked."""
    sp = g.space
    levels = sorted(_level_groups(g))
    if with_edges:
        lv = np.unique(sp.level[g.edges[:, 0]] * (sp.output_level + 1) + sp.level[g.edges[:, 1]])
        return [tuple(divmod(int(v), sp.output_level + 1)) for v in lv]
    return [(a, b) for i, a in enumerate(levels) for b in levels[i + 1:]]


def add_edges(g: Genome, rng: np.random.Generator, n_pairs: int = 3) -> tuple[Genome, Inheritance]:
    """New edges between ``n_pairs`` random level pairs, 10-30 % of each pair's edges (or of its
    target level's width when it has none), drawn by the edge law."""
    sp, groups = g.space, _level_groups(g)
    pairs = _pairs(g, with_edges=False)
    new = []
    for i in rng.choice(len(pairs), size=min(n_pairs, len(pairs)), replace=False):
        a, b = pairs[i]
        in_pair = (sp.level[g.edges[:, 0]] == a) & (sp.level[g.edges[:, 1]] == b)
        k = _fraction(rng, int(in_pair.sum()) or len(groups[b]))
        new.append(_draw_new_edges(g, groups[a], groups[b], k, rng))
    return _append(g, np.concatenate(new)), Inheritance("add_edges")


def remove_edges(g: Genome, rng: np.random.Generator, n_pairs: int = 3,
                 weights: np.ndarray | None = None) -> tuple[Genome, Inheritance]:
    """Remove 10-30 % of the edges of ``n_pairs`` random level pairs, drawn by the inverse edge law,
    or the smallest ``|weight|`` ones when per-edge ``weights`` (E,) are given."""
    sp = g.space
    pairs = _pairs(g, with_edges=True)
    drop = np.zeros(g.n_edges, dtype=bool)
    for i in rng.choice(len(pairs), size=min(n_pairs, len(pairs)), replace=False):
        a, b = pairs[i]
        idx = np.flatnonzero((sp.level[g.edges[:, 0]] == a) & (sp.level[g.edges[:, 1]] == b))
        k = _fraction(rng, len(idx))
        if weights is not None:
            gone = idx[np.argsort(np.abs(weights[idx]), kind="stable")[:k]]
        else:
            gone = rng.choice(idx, size=k, replace=False, p=_law(sp, g.edges[idx, 0], g.edges[idx, 1], inverse=True))
        drop[gone] = True
    ties = None if g.ties is None else g.ties[~drop]
    return _child(g, g.hidden, g.edges[~drop], ties), Inheritance("remove_edges")


def _mean_degree(g: Genome, ids: np.ndarray, col: int) -> float:
    """Mean in- (col=1) or out- (col=0) degree of ``ids`` in ``g``; the genome's mean if none."""
    deg = np.bincount(g.edges[:, col], minlength=g.space.n_neurons)
    pool = ids if len(ids) else g.hidden
    return float(deg[pool].mean()) if len(pool) else 8.0


def add_neurons(g: Genome, rng: np.random.Generator) -> tuple[Genome, Inheritance]:
    """10-30 % more neurons in a random level (empty levels count as width-sized), each with
    incoming edges from lower levels and outgoing edges to higher ones, about as many as the
    level's present neurons have, drawn by the edge law; the new edges start at zero."""
    sp, groups = g.space, _level_groups(g)
    level = int(rng.integers(1, sp.levels + 1))
    present = groups.get(level, np.zeros(0, dtype=np.int64))
    free = np.setdiff1d(sp.level_slots(level), present)
    if not len(free):
        return add_edges(g, rng)
    k = min(len(free), _fraction(rng, len(present) or sp.width // 4 or 1))
    new_ids = np.sort(rng.choice(free, size=k, replace=False))
    lower = np.concatenate([ids for lv, ids in groups.items() if lv < level])
    upper = np.concatenate([ids for lv, ids in groups.items() if lv > level])
    fan_in = max(1, int(round(_mean_degree(g, present, 1))))
    fan_out = max(1, int(round(_mean_degree(g, present, 0))))
    new = []
    for n in new_ids:
        one = np.array([n])
        for src, dst, m in ((lower, one, fan_in), (one, upper, fan_out)):
            # Each new neuron draws its own edges: the law depends on where it sits.
            s, d = (a.ravel() for a in np.meshgrid(src, dst, indexing="ij"))
            pick = rng.choice(len(s), size=min(m, len(s)), replace=False, p=_law(sp, s, d))
            new.append(np.stack([s[pick], d[pick]], 1))
    hidden = np.concatenate([g.hidden, new_ids])
    return _append(g, np.concatenate(new), hidden), Inheritance("add_neurons")


def remove_level(g: Genome, rng: np.random.Generator) -> tuple[Genome, Inheritance]:
    """Remove a random hidden level with its edges, bridging the levels around it by the edge law
    with as many edges as the removed level passed on."""
    sp, groups = g.space, _level_groups(g)
    levels = g.levels_present()
    if not levels:
        return add_neurons(g, rng)
    level = int(rng.choice(levels))
    gone = groups[level]
    keep = ~(np.isin(g.edges[:, 0], gone) | np.isin(g.edges[:, 1], gone))
    below = max(lv for lv in groups if lv < level)
    above = min(lv for lv in groups if lv > level)
    n_out = int(np.isin(g.edges[:, 0], gone).sum())
    base = Genome(sp, np.setdiff1d(g.hidden, gone), g.edges[keep], None if g.ties is None else g.ties[keep])
    bridge = _draw_new_edges(base, groups[below], groups[above], n_out, rng)
    return _append(base, bridge), Inheritance("remove_level")


def duplicate_neuron(g: Genome, rng: np.random.Generator) -> tuple[Genome, Inheritance]:
    """Net2WiderNet split: a copy of a random hidden neuron in a free slot of its level (the nearest
    one) with the same incoming and outgoing edges; ``morphism.inherit`` halves the outgoing ones."""
    sp = g.space
    if not len(g.hidden):
        return add_neurons(g, rng)
    orig = int(rng.choice(g.hidden))
    free = np.setdiff1d(sp.level_slots(int(sp.level[orig])), g.hidden)
    if not len(free):
        return add_edges(g, rng)
    copy = int(free[np.argmin(np.linalg.norm(sp.positions[free] - sp.positions[orig], axis=1))])
    inc = np.flatnonzero(g.edges[:, 1] == orig)
    out = np.flatnonzero(g.edges[:, 0] == orig)
    new = np.concatenate([np.stack([g.edges[inc, 0], np.full(len(inc), copy)], 1),
                          np.stack([np.full(len(out), copy), g.edges[out, 1]], 1)])
    ties = g.ties
    if ties is not None:
        # Incoming copies share the originals' groups (equal weights); halved outgoing weights
        # cannot stay in a group shared with other edges, so both neurons' outgoing edges untie.
        fresh = _new_ties(g, 2 * len(out))
        ties = ties.copy()
        ties[out] = fresh[:len(out)]
        new_ties = np.concatenate([g.ties[inc], fresh[len(out):]])
        child = _child(g, np.append(g.hidden, copy), np.concatenate([g.edges, new]), np.concatenate([ties, new_ties]))
    else:
        child = _append(g, new, np.append(g.hidden, copy))
    return child, Inheritance("duplicate_neuron", ((orig, copy),))


def tie_weights(g: Genome, rng: np.random.Generator) -> tuple[Genome, Inheritance]:
    """Tie the untied edges of one level pair that share a relative offset (target minus source
    position, rounded to a pixel) into one weight, or, half the time when ties exist, untie a group."""
    sp = g.space
    ties = g.ties.copy() if g.ties is not None else np.arange(g.n_edges)
    _, counts = np.unique(ties, return_counts=True)
    if g.ties is not None and (counts > 1).any() and rng.random() < 0.5:
        labels, counts = np.unique(ties, return_counts=True)
        label = rng.choice(labels[counts > 1])
        idx = np.flatnonzero(ties == label)
        ties[idx] = ties.max() + 1 + np.arange(len(idx))
        return _child(g, g.hidden, g.edges, ties), Inheritance("untie_weights")
    untied = np.bincount(ties)[ties] == 1
    offset = np.round(sp.positions[g.edges[:, 1]] - sp.positions[g.edges[:, 0]]).astype(np.int64)
    key = np.stack([sp.level[g.edges[:, 0]], sp.level[g.edges[:, 1]], offset[:, 0], offset[:, 1]], 1)[untied]
    if not len(key):
        return add_edges(g, rng)
    classes, inverse, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    if not (counts > 1).any():
        return add_edges(g, rng)
    chosen = rng.choice(np.flatnonzero(counts > 1))
    idx = np.flatnonzero(untied)[inverse.reshape(-1) == chosen]
    ties[idx] = ties.max() + 1
    return _child(g, g.hidden, g.edges, ties), Inheritance("tie_weights")


OPERATORS = {
    "add_neurons": add_neurons,
    "add_edges": add_edges,
    "remove_edges": remove_edges,
    "remove_level": remove_level,
    "duplicate_neuron": duplicate_neuron,
    "tie_weights": tie_weights,
}


def mutate(g: Genome, rng: np.random.Generator, rates: MutationRates = MutationRates(),
           weights: np.ndarray | None = None) -> tuple[Genome, Inheritance]:
    """Apply one operator drawn by ``rates``; a child without any input-to-output path is redrawn."""
    names = list(OPERATORS)
    p = np.array([getattr(rates, n) for n in names], dtype=float)
    for _ in range(10):
        name = names[rng.choice(len(names), p=p / p.sum())]
        if name == "remove_edges":
            child, how = remove_edges(g, rng, weights=weights)
        else:
            child, how = OPERATORS[name](g, rng)
        if np.isin(g.space.outputs, child.edges[:, 1]).any():
            return child, how
    return add_edges(g, rng)
