"""neuronas core: genomes of single neurons, their compiled sparse networks, data and the search."""
__version__ = "0.1.0"
