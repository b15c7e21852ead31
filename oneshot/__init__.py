"""Weight-sharing neuron supernet: an Estimator plugin of the neuronas core."""
