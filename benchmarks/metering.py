"""The meter of ``benchmarks.search_cost``: the truth recipe with its per-seed cache, and an arm's
estimator whose CPU-seconds are counted per call and replayed on resume."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch

from evolution.estimators import Estimate, TrainEstimator
from evolution.genome import Genome


def genome_key(genome: Genome) -> str:
    return hashlib.sha1(genome.to_json().encode()).hexdigest()


class Ledger:
    """An append-only JSONL file of records, read back on resume (a line cut by a kill is dropped)."""

    def __init__(self, path: Path) -> None:
        self.path, self.rows = path, []
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    self.rows.append(json.loads(line))
                except json.JSONDecodeError:
                    break
            path.write_text("".join(json.dumps(r) + "\n" for r in self.rows))

    def keep(self, which) -> None:
        """Drop the rows ``which`` rejects (rewrites the file)."""
        self.rows = [r for r in self.rows if which(r)]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in self.rows))

    def add(self, row: dict) -> None:
        self.rows.append(row)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


class Truth(TrainEstimator):
    """The one training recipe: estimates are validation accuracy; test accuracy and the CPU-seconds
    of each genome go to a per-seed cache, so a genome is trained once whichever arm asks."""

    def __init__(self, data, epochs: int, batch_size: int, seed: int, cache: Path) -> None:
        super().__init__(data, epochs=epochs, batch_size=batch_size, lr=3e-3, seed=seed, schedule="cosine")
        self.cache = Ledger(cache)
        self.known = {r["key"]: r for r in self.cache.rows}
        self._test = float("nan")

    def score(self, net) -> float:
        val = super().score(net)
        x, y = self._split("test")
        with torch.no_grad():
            self._test = float((net(x).argmax(1) == y).float().mean())
        return val

    def truth(self, genome: Genome) -> dict:
        """``{val, test, cpu, error}`` of ``genome`` trained by the recipe (cached)."""
        key = genome_key(genome)
        if key not in self.known:
            start = time.process_time()
            est = self._one(genome, None)
            row = {"key": key, "val": est.score, "test": self._test if est.ok else float("nan"),
                   "cpu": time.process_time() - start, "error": est.error}
            self.cache.add(row)
            self.known[key] = row
        return self.known[key]

    def estimate(self, genomes, parents=None) -> list[Estimate]:
        rows = [self.truth(g) for g in genomes]
        return [Estimate(r["val"], r["cpu"], r["error"]) for r in rows]


class Metered:
    """An arm's estimator with its cost on a meter: CPU-seconds of each call, and estimates kept per
    (iteration, genome) so a resumed iteration replays them (and their cost) instead of recomputing."""

    def __init__(self, inner, ledger: Path, truth: Truth | None = None) -> None:
        self.inner, self.truth, self.log = inner, truth, Ledger(ledger)
        self.done = {(r["iteration"], r["key"]): r for r in self.log.rows}
        self.replayed, self.remote, self.iteration = 0.0, 0.0, 0
        # Training estimators cost seconds per candidate: keep each as it finishes.
        self.chunk = 1 if isinstance(inner, TrainEstimator) else None

    def __getattr__(self, name):  # update / state_dict / load_state_dict of the inner estimator
        return getattr(self.inner, name)

    def estimate(self, genomes, parents=None) -> list[Estimate]:
        parents = list(parents) if parents is not None else [None] * len(genomes)
        keys = [genome_key(g) for g in genomes]
        todo = [i for i, k in enumerate(keys) if (self.iteration, k) not in self.done]
        tasks = getattr(getattr(self.inner, "executor", None), "name", "local") != "local"
        step = max(1, len(todo)) if tasks or not self.chunk else self.chunk
        for s in range(0, len(todo), step):
            idx = todo[s:s + step]
            if self.truth is not None:
                # A genome another arm (or the dense ladder) already trained costs no time now; it is
                # charged what its training cost, as it is when replayed after a resume.
                cached = sum(self.truth.known[keys[i]]["cpu"] for i in idx if keys[i] in self.truth.known)
                out = self.truth.estimate([genomes[i] for i in idx])
                cpus = [self.truth.known[keys[i]]["cpu"] for i in idx]
                self.remote += cached
            else:
                start = time.process_time()
                out = self.inner.estimate([genomes[i] for i in idx], [parents[i] for i in idx])
                # An executor's tasks spend their CPU-seconds in other processes: each reports its own.
                own = (time.process_time() - start) / len(idx)
                cpus = [own + (e.cpu_seconds or 0.0) for e in out]
                self.remote += sum(e.cpu_seconds or 0.0 for e in out)
            for i, e, c in zip(idx, out, cpus):
                row = {"iteration": self.iteration, "key": keys[i], "score": e.score, "error": e.error, "cpu": c}
                self.log.add(row)
                self.done[(self.iteration, keys[i])] = dict(row, fresh=True)
        result = []
        for i, k in enumerate(keys):
            r = self.done[(self.iteration, k)]
            if not r.pop("fresh", False):
                self.replayed += r["cpu"]
            result.append(Estimate(r["score"], r["cpu"], r["error"]))
        return result
