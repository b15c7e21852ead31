"""Graph hypernetwork over genome DAGs: predicts every edge weight of any genome (an Estimator plugin)."""
