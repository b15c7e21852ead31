import json

import numpy as np
import pytest

from evolution import seeds
from evolution.genome import Genome, SearchSpace
from evolution.sampling import random_genome


@pytest.fixture
def space() -> SearchSpace:
    return SearchSpace((1, 4, 4), n_outputs=3, levels=2, width=4)


def test_ids_levels_and_positions(space):
    assert space.n_inputs == 16 and space.n_neurons == 16 + 8 + 3
    assert space.hidden_id(2, 1) == 16 + 4 + 1
    assert space.level.tolist() == [0] * 16 + [1] * 4 + [2] * 4 + [3] * 3
    assert space.lattice == (2, 2)
    # Inputs sit on their pixels; a 2x2 lattice sits at the centres of the quadrants of the 4x4 plane.
    assert space.positions[5].tolist() == [1.0, 1.0]
    assert space.positions[16:20].tolist() == [[0.5, 0.5], [0.5, 2.5], [2.5, 0.5], [2.5, 2.5]]
    assert np.allclose(space.positions[space.outputs][:, 0], 1.5)


def test_channels_stack_at_the_same_pixel():
    sp = SearchSpace((3, 2, 2), 2, 1, 4)
    assert np.array_equal(sp.positions[0], sp.positions[4]) and np.array_equal(sp.positions[4], sp.positions[8])


def test_edge_law(space):
    src, dst = np.array([0, 0]), np.array([16, 19])
    d = np.linalg.norm(space.positions[src] - space.positions[dst], axis=1)
    assert np.allclose(space.edge_law(src, dst), np.exp(-d / (4 + 1.5 * 1)))
    assert np.allclose(space.edge_law(np.array([16]), np.array([20])), np.exp(-0.0 / (4 + 1.5 * 2)))


def test_json_round_trip_is_exact(space):
    g = Genome(space, [16, 17, 21], [[0, 16], [1, 17], [16, 21], [17, 21], [21, 25], [3, 24]], [0, 1, 2, 2, 3, 4]).validate()
    back = Genome.from_json(g.to_json())
    assert back.space == g.space
    assert np.array_equal(back.hidden, g.hidden) and np.array_equal(back.edges, g.edges) and np.array_equal(back.ties, g.ties)
    assert back.to_json() == g.to_json()


def test_save_load_round_trip(tmp_path):
    sp = seeds.space_for_spec("conv:2x3,mlp:8", (1, 6, 6), 4)
    g = seeds.build("conv:2x3,mlp:8", sp)
    g.save(tmp_path / "g.json")
    back = Genome.load(tmp_path / "g.json")
    assert np.array_equal(back.edges, g.edges) and np.array_equal(back.groups, g.groups)
    assert not (tmp_path / "g.json.tmp").exists()


@pytest.mark.parametrize(
    "hidden, edges, message",
    [
        ([99], [], "hidden neuron 99 is outside the grid (hidden ids are 16..23)"),
        ([5], [], "hidden neuron 5 is outside the grid"),
        ([16, 16], [], "hidden neuron 16 is listed twice"),
        ([20, 16], [], "hidden neurons must be listed in ascending order: 20 comes before 16"),
        ([16], [[0, 17]], "edge (0, 17): unknown neuron 17"),
        ([16], [[0, 400]], "edge (0, 400): unknown neuron 400"),
        ([16, 17], [[16, 17]], "edge (16, 17) goes from level 1 to level 1; edges must go up a level"),
        ([16, 20], [[20, 16]], "edge (20, 16) goes from level 2 to level 1"),
        ([16, 20], [[16, 20], [20, 16]], "edges form a cycle: 16 -> 20 -> 16"),
        ([16], [[0, 16], [0, 16]], "duplicate edge (0, 16)"),
    ],
)
def test_validate_names_the_bad_neuron_or_edge(space, hidden, edges, message):
    with pytest.raises(ValueError) as err:
        Genome(space, hidden, np.array(edges, dtype=np.int64).reshape(-1, 2)).validate()
    assert message in str(err.value)


def test_bad_json_files(tmp_path, space):
    good = Genome(space, [16], [[0, 16], [16, 24]]).to_dict()
    cases = {
        "truncated.json": json.dumps(good)[:-20],
        "version.json": json.dumps({**good, "version": 99}),
        "foreign.json": json.dumps({"edges": []}),
        "missing.json": json.dumps({k: v for k, v in good.items() if k != "edges"}),
        "badedge.json": json.dumps({**good, "edges": [[0, 16], [16, 1]]}),
        "selfloop.json": json.dumps({**good, "edges": [[0, 16], [16, 16]]}),
        "badspace.json": json.dumps({**good, "space": {"input_shape": [1, 4, 4]}}),
        "hugeid.json": json.dumps({**good, "edges": [[0, 16], [16, 2**70]]}),
        "floatid.json": json.dumps({**good, "hidden": [16.7]}),
        "textid.json": json.dumps({**good, "edges": [[0, "16"], [16, 24]]}),
        "ragged.json": json.dumps({**good, "edges": [[0, 16], [16]]}),
        "flatedges.json": json.dumps({**good, "edges": [0, 16, 16]}),
        "negtie.json": json.dumps({**good, "ties": [0, -3]}),
        "shorttie.json": json.dumps({**good, "ties": [0]}),
    }
    expected = {
        "truncated.json": "not valid JSON",
        "version.json": "genome format version 99 is not supported (expected 1)",
        "foreign.json": "not a neuronas genome",
        "missing.json": "missing field 'edges'",
        "badedge.json": "edge (16, 1) goes from level 1 to level 0",
        "selfloop.json": "edges form a cycle: 16 -> 16",
        "badspace.json": "missing or malformed field",
        "hugeid.json": "field 'edges': 1180591620717411303424 is too large for a neuron id",
        "floatid.json": "field 'hidden': 16.7 is not an integer",  # never rounded to a neighbour's id
        "textid.json": "field 'edges': '16' is not an integer",
        "ragged.json": "field 'edges': expected a rectangular list of integers",
        "flatedges.json": "field 'edges': expected a list of [src, dst] pairs, got shape (3,)",
        "negtie.json": "ties: group label -3 is negative",
        "shorttie.json": "ties must hold one group label per edge (2), got shape (1,)",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError) as err:
            Genome.load(tmp_path / name)
        msg = str(err.value)
        assert name in msg and expected[name] in msg and "\n" not in msg
    with pytest.raises(FileNotFoundError, match="nope.json does not exist"):
        Genome.load(tmp_path / "nope.json")
    (tmp_path / "binary.json").write_bytes(b"\x80PK\x03\x04")  # e.g. a checkpoint passed by mistake
    with pytest.raises(ValueError, match="binary.json: not a genome file"):
        Genome.load(tmp_path / "binary.json")


def test_pruning_drops_dead_neurons(space):
    # 17 has no input, 18 reaches no output: both go, with their edges.
    g = Genome(space, [16, 17, 18], [[0, 16], [16, 24], [17, 24], [1, 18], [2, 25]]).validate()
    p = g.pruned()
    assert p.hidden.tolist() == [16]
    assert p.edges.tolist() == [[0, 16], [16, 24], [2, 25]]


def test_groups_number_ties_by_first_appearance(space):
    g = Genome(space, [16], [[0, 16], [1, 16], [2, 16], [16, 24]], ties=[7, 3, 7, 9])
    assert g.groups.tolist() == [0, 1, 0, 2] and g.n_weights == 3


def test_canonical_makes_full_pairs_row_major(space):
    rng = np.random.default_rng(0)
    g = random_genome(space, rng, density=0.5)
    e = g.edges[rng.permutation(g.n_edges)]
    c = Genome(space, g.hidden, e).canonical()
    assert np.array_equal(c.edges, g.edges)


def test_canonical_sorts_by_target_level_source_level_source_target():
    space = SearchSpace((1, 6, 6), 4, levels=3, width=9)
    rng = np.random.default_rng(1)
    g = random_genome(space, rng, density=0.5, n_levels=3, skip=0.5)
    lv = space.level
    assert (lv[g.edges[:, 1]] - lv[g.edges[:, 0]] > 1).any()  # edges across levels too
    perm = rng.permutation(g.n_edges)
    c = Genome(space, g.hidden, g.edges[perm], ties=perm).canonical()
    keys = [(lv[d], lv[s], s, d) for s, d in c.edges.tolist()]
    assert keys == sorted(keys) and len(set(keys)) == g.n_edges
    assert np.array_equal(g.edges[c.ties], c.edges)  # tie labels moved with their edges


def test_space_errors():
    with pytest.raises(ValueError, match="not a multiple of channels"):
        SearchSpace((1, 4, 4), 3, 1, 10, channels=4)
    with pytest.raises(ValueError, match="expected \\(C, H, W\\)"):
        SearchSpace((4, 4), 3)
