"""Fixtures for every test in tests/evolution: the digits data (``data``) and random genomes on a
small digits grid (``genomes``)."""
from __future__ import annotations

import numpy as np
import pytest

from evolution.data import DigitsDataModule
from evolution.genome import SearchSpace
from evolution.sampling import random_genome


@pytest.fixture(scope="module")
def data():
    return DigitsDataModule()


@pytest.fixture
def genomes():
    """``genomes(n, seed, width)``: n random genomes of assorted density on a 2-level digits grid."""
    def draw(n: int, seed: int = 0, width: int = 16):
        space = SearchSpace((1, 8, 8), 10, levels=2, width=width)
        rng = np.random.default_rng(seed)
        return [random_genome(space, rng, density=float(rng.uniform(0.1, 0.6))) for _ in range(n)]
    return draw
