"""Graph hypernetwork: predicts every weight of any genome from its graph (an Estimator plugin for the search)."""
