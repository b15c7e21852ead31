"""The search space (a bounded grid of neuron slots) and the genome (a DAG of neurons on it).

Neuron ids are stable across every genome of a space: inputs first (channel-major, as the data is
flattened), then hidden level 1 slot 0.., level 2.., then the outputs. So an edge ``(src, dst)`` means
the same thing in every genome, which is what weight inheritance and weight sharing key on.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from evolution import dag

FORMAT = "neuronas.genome"
VERSION = 1


def _lattice(points: int, height: int, width: int) -> tuple[int, int]:
    """Rows x cols with rows * cols == points, closest to the plane's aspect ratio."""
    if height == 1:
        return 1, points
    target = math.sqrt(points * height / width)
    rows = min((r for r in range(1, points + 1) if points % r == 0), key=lambda r: (abs(r - target), r))
    return rows, points // rows


def _spread(n: int, extent: int) -> np.ndarray:
    """Centres of ``n`` equal cells over ``extent`` pixels, in pixel coordinates."""
    return (np.arange(n) + 0.5) * extent / n - 0.5


@dataclass(frozen=True)
class SearchSpace:
    """Inputs at their pixel (or feature) positions, ``levels`` x ``width`` hidden slots, outputs.

    A hidden level holds ``channels`` copies of a ``rows x cols`` lattice spread evenly over the
    input plane (slot = channel * points + point), so conv-like genomes have a place per channel.
    """

    input_shape: tuple[int, ...]
    n_outputs: int
    levels: int = 3
    width: int = 256
    channels: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        if len(self.input_shape) not in (1, 3) or min(self.input_shape) < 1:
            raise ValueError(f"input_shape {self.input_shape}: expected (C, H, W) for images or (F,) for features")
        for name in ("n_outputs", "levels", "width", "channels"):
            if int(getattr(self, name)) < (0 if name == "levels" else 1):
                raise ValueError(f"SearchSpace.{name} = {getattr(self, name)}: must be positive")
        if self.width % self.channels:
            raise ValueError(f"SearchSpace.width {self.width} is not a multiple of channels {self.channels}")

    # --- sizes and ids -------------------------------------------------------------------
    @property
    def plane(self) -> tuple[int, int]:
        """(height, width) of the input plane in pixels; features lie on one row."""
        return (1, self.input_shape[0]) if len(self.input_shape) == 1 else self.input_shape[1:]

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def n_neurons(self) -> int:
        return self.n_inputs + self.levels * self.width + self.n_outputs

    @property
    def output_level(self) -> int:
        return self.levels + 1

    @property
    def lattice(self) -> tuple[int, int]:
        """(rows, cols) of the per-channel lattice of a hidden level."""
        return _lattice(self.width // self.channels, *self.plane)

    @cached_property
    def inputs(self) -> np.ndarray:
        return np.arange(self.n_inputs, dtype=np.int64)

    @cached_property
    def outputs(self) -> np.ndarray:
        return np.arange(self.n_neurons - self.n_outputs, self.n_neurons, dtype=np.int64)

    def hidden_id(self, level: int | np.ndarray, slot: int | np.ndarray) -> np.ndarray:
        """Id of hidden slot ``slot`` of level ``level`` (1-based)."""
        return self.n_inputs + (np.asarray(level) - 1) * self.width + np.asarray(slot)

    def level_slots(self, level: int) -> np.ndarray:
        """All hidden ids of one level."""
        return self.hidden_id(level, np.arange(self.width, dtype=np.int64))

    @cached_property
    def level(self) -> np.ndarray:
        """``(n_neurons,)`` level of every neuron: 0 inputs, 1..levels hidden, levels + 1 outputs."""
        hidden = 1 + np.arange(self.levels * self.width) // self.width
        return np.concatenate([np.zeros(self.n_inputs), hidden, np.full(self.n_outputs, self.output_level)]).astype(
            np.int64
        )

    @cached_property
    def positions(self) -> np.ndarray:
        """``(n_neurons, 2)`` planar (row, col) positions in input pixels."""
        h, w = self.plane
        rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        channels = 1 if len(self.input_shape) == 1 else self.input_shape[0]
        inputs = np.tile(np.stack([rows.ravel(), cols.ravel()], 1), (channels, 1)).astype(float)
        lr, lc = self.lattice
        r, c = np.meshgrid(_spread(lr, h), _spread(lc, w), indexing="ij")
        level = np.tile(np.stack([r.ravel(), c.ravel()], 1), (self.channels, 1))
        outputs = np.stack([np.full(self.n_outputs, (h - 1) / 2), _spread(self.n_outputs, w)], 1)
        return np.concatenate([inputs, np.tile(level, (self.levels, 1)), outputs])

    # --- the edge law --------------------------------------------------------------------
    def edge_law(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Relative chance of an edge ``exp(-d / (4 + 1.5 * l))``, d planar distance, l the target level."""
        return np.exp(self.log_edge_law(src, dst))

    def log_edge_law(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """``log(edge_law)``: ``-d / (4 + 1.5 * l)``."""
        d = np.linalg.norm(self.positions[src] - self.positions[dst], axis=-1)
        return -d / (4.0 + 1.5 * self.level[dst])

    def edge_id(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Stable int64 id of each potential edge: the same in every genome of this space."""
        return np.asarray(src, dtype=np.int64) * self.n_neurons + np.asarray(dst, dtype=np.int64)

    def to_dict(self) -> dict:
        return {
            "input_shape": list(self.input_shape),
            "n_outputs": self.n_outputs,
            "levels": self.levels,
            "width": self.width,
            "channels": self.channels,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "SearchSpace":
        try:
            return cls(tuple(d["input_shape"]), int(d["n_outputs"]), int(d["levels"]), int(d["width"]), int(d.get("channels", 1)))
        except (KeyError, TypeError) as err:
            raise ValueError(f"search space {d!r}: missing or malformed field {err}") from None


@dataclass(frozen=True, eq=False)
class Genome:
    """Present hidden neurons and edges on a ``SearchSpace``; plain data, no torch.

    ``hidden``: sorted ``(H,)`` int64 ids. ``edges``: ``(E, 2)`` int64 ``(src, dst)`` in genome
    order; weights are always one vector aligned with it. ``ties``: optional ``(E,)`` group label per
    edge; edges with the same label share one weight (a convolution seen at neuron level).
    """

    space: SearchSpace
    hidden: np.ndarray
    edges: np.ndarray
    ties: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", np.asarray(self.hidden, dtype=np.int64).reshape(-1))
        edges = np.asarray(self.edges, dtype=np.int64)
        object.__setattr__(self, "edges", edges.reshape(-1, 2) if edges.size == 0 else edges)
        if self.ties is not None:
            object.__setattr__(self, "ties", np.asarray(self.ties, dtype=np.int64).reshape(-1))

    @property
    def n_edges(self) -> int:
        return len(self.edges)

    @property
    def neurons(self) -> np.ndarray:
        """All present ids: inputs, hidden, outputs (ascending)."""
        return np.concatenate([self.space.inputs, self.hidden, self.space.outputs])

    @property
    def groups(self) -> np.ndarray:
        """``(E,)`` weight index of each edge, numbered 0..G-1 in order of first appearance."""
        if self.ties is None:
            return np.arange(self.n_edges, dtype=np.int64)
        _, first, inverse = np.unique(self.ties, return_index=True, return_inverse=True)
        rank = np.empty(len(first), dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(len(first))
        return rank[inverse.reshape(-1)]

    @property
    def n_weights(self) -> int:
        """Number of free edge weights (tie groups)."""
        return self.n_edges if self.ties is None else len(np.unique(self.ties))

    def levels_present(self) -> list[int]:
        """Hidden levels with at least one neuron, ascending."""
        return sorted(set(self.space.level[self.hidden].tolist()))

    # --- validation ------------------------------------------------------------------------
    def validate(self) -> "Genome":
        """Raise ``ValueError`` naming the first bad neuron or edge; return self when valid."""
        sp, e = self.space, self.edges
        lo, hi = sp.n_inputs, sp.n_inputs + sp.levels * sp.width
        bad = self.hidden[(self.hidden < lo) | (self.hidden >= hi)]
        if len(bad):
            raise ValueError(f"hidden neuron {bad[0]} is outside the grid (hidden ids are {lo}..{hi - 1})")
        if len(np.unique(self.hidden)) != len(self.hidden):
            dup = self.hidden[np.flatnonzero(np.diff(np.sort(self.hidden)) == 0)[0]]
            raise ValueError(f"hidden neuron {dup} is listed twice")
        if (np.diff(self.hidden) < 0).any():  # compile slices each level's LayerNorm out of this order
            i = int(np.flatnonzero(np.diff(self.hidden) < 0)[0])
            raise ValueError(f"hidden neurons must be listed in ascending order: {self.hidden[i]} comes before "
                             f"{self.hidden[i + 1]}")
        if e.ndim != 2 or e.shape[1] != 2:
            raise ValueError(f"edges must be an (E, 2) array of (src, dst) ids, got shape {e.shape}")
        present = np.zeros(sp.n_neurons, dtype=bool)
        present[self.neurons] = True
        for col in (0, 1):
            bad = np.flatnonzero((e[:, col] < 0) | (e[:, col] >= sp.n_neurons))
            if not len(bad):
                bad = np.flatnonzero(~present[e[:, col]])
            if len(bad):
                s, d = e[bad[0]]
                raise ValueError(f"edge ({s}, {d}): unknown neuron {e[bad[0], col]} (not an input, output or present hidden neuron)")
        up = sp.level[e[:, 0]] < sp.level[e[:, 1]]
        if not up.all():
            cycle = dag.find_cycle(e, sp.n_neurons)
            if cycle is not None:
                raise ValueError(f"edges form a cycle: {' -> '.join(map(str, cycle))}")
            s, d = e[np.flatnonzero(~up)[0]]
            raise ValueError(
                f"edge ({s}, {d}) goes from level {sp.level[s]} to level {sp.level[d]}; edges must go up a level"
            )
        ids = sp.edge_id(e[:, 0], e[:, 1])
        uniq, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            s, d = divmod(int(uniq[counts > 1][0]), sp.n_neurons)
            raise ValueError(f"duplicate edge ({s}, {d})")
        if self.ties is not None and self.ties.shape != (len(e),):
            raise ValueError(f"ties must hold one group label per edge ({len(e)}), got shape {self.ties.shape}")
        if self.ties is not None and (self.ties < 0).any():
            raise ValueError(f"ties: group label {self.ties[self.ties < 0][0]} is negative; labels are >= 0")
        return self

    # --- edits -----------------------------------------------------------------------------
    def pruned(self) -> "Genome":
        """Without hidden neurons that lie on no input-to-output path, and without their edges."""
        sp = self.space
        live, keep = dag.prune(self.edges, sp.n_neurons, sp.inputs, sp.outputs)
        hidden = self.hidden[live[self.hidden]]
        ties = None if self.ties is None else self.ties[keep]
        return Genome(sp, hidden, self.edges[keep], ties)

    def canonical(self) -> "Genome":
        """Edges sorted by (target level, source level, src, dst): each level pair's edges are then
        contiguous and row-major, so a full pair compiles to a free view of the weight vector."""
        sp, e, n = self.space, self.edges, self.space.n_neurons
        # One int64 key in that order (levels < output_level + 1, ids < n): a stable argsort of it
        # is lexsort's order at a tenth of its time, and draws are nearly sorted already.
        key = ((sp.level[e[:, 1]] * (sp.output_level + 1) + sp.level[e[:, 0]]) * n + e[:, 0]) * n + e[:, 1]
        order = np.argsort(key, kind="stable")
        ties = None if self.ties is None else self.ties[order]
        return Genome(sp, np.sort(self.hidden), e[order], ties)

    # --- JSON ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "space": self.space.to_dict(),
            "hidden": self.hidden.tolist(),
            "edges": self.edges.tolist(),
            "ties": None if self.ties is None else self.ties.tolist(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict, source: str = "genome") -> "Genome":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"{source}: not a neuronas genome (expected \"format\": \"{FORMAT}\")")
        if d.get("version") != VERSION:
            raise ValueError(f"{source}: genome format version {d.get('version')!r} is not supported (expected {VERSION})")
        missing = [k for k in ("space", "hidden", "edges") if k not in d]
        if missing:
            raise ValueError(f"{source}: missing field {missing[0]!r}")
        try:
            edges = _int_field(d["edges"], "edges", source)
            if edges.size == 0:
                edges = edges.reshape(0, 2)
            elif edges.ndim != 2 or edges.shape[1] != 2:
                raise ValueError(f"field 'edges': expected a list of [src, dst] pairs, got shape {edges.shape}")
            ties = None if d.get("ties") is None else _int_field(d["ties"], "ties", source)
            genome = cls(SearchSpace.from_dict(d["space"]), _int_field(d["hidden"], "hidden", source), edges, ties)
            return genome.validate()
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from None

    @classmethod
    def from_json(cls, text: str, source: str = "genome") -> "Genome":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{source}: not valid JSON ({err.msg} at line {err.lineno} column {err.colno}); truncated?") from None
        return cls.from_dict(d, source)

    def save(self, path: str | Path) -> None:
        """Write atomically, so an interrupted save never leaves a truncated genome behind."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json())
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "Genome":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"genome file {path} does not exist")
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not a genome file (not UTF-8 text); genome files are JSON") from None
        return cls.from_json(text, source=str(path))

    def summary(self) -> str:
        """One line: neurons per present level and edge count."""
        per_level = np.bincount(self.space.level[self.hidden], minlength=self.space.output_level)[1:]
        widths = ",".join(str(int(n)) for n in per_level if n)
        return f"hidden [{widths}] edges {self.n_edges} weights {self.n_weights}"


def _int_field(value, name: str, source: str) -> np.ndarray:
    """A genome file's integer array, or one line naming the field and the value: floats are not
    rounded and ids beyond int64 do not wrap around into other ids."""
    try:
        arr = np.array(value)
    except ValueError:  # ragged nesting
        raise ValueError(f"field {name!r}: expected a rectangular list of integers") from None
    limit = np.iinfo(np.int64)
    if arr.size and (arr.dtype.kind not in "iu" or arr.max() > limit.max):
        def ok(v) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and limit.min <= v <= limit.max
        # The file's own values: numpy may have turned a huge int into a float.
        bad = next(v for v in np.array(value, dtype=object).ravel() if not ok(v))
        reason = "too large for a neuron id" if isinstance(bad, int) and not isinstance(bad, bool) else "not an integer"
        raise ValueError(f"field {name!r}: {repr(bad)[:40]} is {reason}")
    return arr.astype(np.int64)
