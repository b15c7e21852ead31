"""The search loop: a population evolved by tournament on (Pareto rank, crowding) and aging.

Each iteration selects M parents by tournament, mutates them, estimates the M children in one
batch, adds them, removes the oldest until the population is back to its size, and updates the
all-time archive of non-dominated candidates and its hypervolume. The whole state (population,
archive, history offset, iteration, every RNG) is committed after every iteration (``evolution.rundir``),
so a search killed at any moment resumes as if never stopped.
"""
from __future__ import annotations

import hashlib
import json
import random
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from evolution import cost, nsga2, rundir, seeds
from evolution.estimators import Estimate, Estimator, Parent, restore_estimator
from evolution.genome import Genome, SearchSpace
from evolution.mutations import Inheritance, MutationRates, mutate
from evolution.network import SparseNet
from evolution.sampling import random_genome
from evolution.tracking import Tracker, WandbSettings

OBJECTIVES = ("error", "flops", "params", "latency")
STATE = rundir.STATE


@dataclass
class Candidate:
    """One estimated genome and where it came from."""

    id: int
    genome: Genome = field(repr=False)
    parent: int | None
    mutation: str
    iteration: int
    score: float
    flops: int
    params: int
    seconds: float
    error: str | None = None
    latency: float = float("nan")
    state: dict | None = field(default=None, repr=False)

    def objectives(self, names: list[str]) -> list[float]:
        """Objectives to minimise; ``error`` is 1 - score."""
        values = {"error": 1.0 - self.score, "flops": float(self.flops), "params": float(self.params),
                  "latency": self.latency}
        return [values[n] for n in names]

    def record(self) -> dict:
        """The history.jsonl line (the genome is in ``genomes/ID.json``)."""
        return rundir.record(self.__dict__, self.genome.n_edges, len(self.genome.hidden))


# Where candidates run, not what the search does: a run may resume on another executor.
EXECUTION = ("executor", "ray_address", "ray_cpus", "ray_gpus", "ray_retries")


@dataclass(frozen=True)
class SearchSettings:
    """What a search does (the estimator and data are configured beside it).

    Args:
        run_dir: where history.jsonl, front.json, genomes/ and the state go.
        seed: seeds every random choice of the search.
        iterations: iterations to run (a resumed search runs up to this many in all).
        population: population size P.
        children: children M per iteration (and parents selected per iteration).
        tournament: tournament size.
        objectives: two or three of error, flops, params, latency (all minimised).
        init: initial genomes: ``random`` (the edge-law sampler), specs (``mlp:64``) or genome files;
            cycled until the population is full.
        levels: hidden levels of the grid.
        width: slots per level.
        channels: lattice copies per level (for conv-like genomes).
        density: density of random initial genomes.
        rates: relative rates of the mutation operators.
        ref_point: hypervolume reference point in normalised objectives (error in [0, 1],
            the others divided by the largest value in the initial population).
        progress: show a progress bar.
        rank_check_every: every this many iterations (0: never), retrain ``rank_check_size`` random
            population members for ``rank_check_steps`` steps and log the running Kendall tau of the
            estimator against them (``rank_check.jsonl``); warn when it is below ``rank_check_warn``.
        rank_check_size: population members retrained per check.
        rank_check_steps: training steps of each check (the cheap truth).
        rank_check_warn: the tau below which the search warns that its estimator misleads it.
        wandb: Weights & Biases logging (off unless ``wandb.project`` is set).
        executor: where training-based estimators train each generation's children: ``local`` (this
            process) or ``ray`` (Ray tasks; the same history for the same seed).
        ray_address: the Ray cluster (``auto``: the one ``ray start`` began here); none: a local Ray.
        ray_cpus: CPUs each Ray task reserves.
        ray_gpus: GPUs each Ray task reserves.
        ray_retries: times a Ray task that raised is run again before it is recorded as the
            candidate's error.
    """

    run_dir: str = "runs/search"
    seed: int = 0
    iterations: int = 20
    population: int = 16
    children: int = 8
    tournament: int = 2
    objectives: tuple[str, ...] = ("error", "flops")
    init: tuple[str, ...] = ("random",)
    levels: int = 3
    width: int = 64
    channels: int = 1
    density: float = 0.1
    rates: MutationRates = MutationRates()
    ref_point: tuple[float, ...] | None = None
    progress: bool = True
    rank_check_every: int = 0
    rank_check_size: int = 4
    rank_check_steps: int = 200
    rank_check_warn: float = 0.3
    wandb: WandbSettings = WandbSettings()
    executor: str = "local"
    ray_address: str | None = None
    ray_cpus: float = 1
    ray_gpus: float = 0
    ray_retries: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.rates, dict):  # from a plain config
            object.__setattr__(self, "rates", MutationRates(**self.rates))
        if isinstance(self.wandb, dict):
            object.__setattr__(self, "wandb", WandbSettings(**self.wandb))
        bad = [o for o in self.objectives if o not in OBJECTIVES]
        if bad or not 2 <= len(self.objectives) <= 3:
            raise ValueError(f"objectives {list(self.objectives)}: expected two or three of {', '.join(OBJECTIVES)}")
        if self.population < 2 or self.children < 1 or self.iterations < 0 or self.tournament < 1:
            raise ValueError("search needs population >= 2, children >= 1, iterations >= 0, tournament >= 1")
        if not self.init:
            raise ValueError("init []: expected at least one source of initial genomes (random, a spec, a genome file)")
        if self.levels < 1 or self.width < 1:  # the neuron mutations need a level to put neurons in
            raise ValueError(f"levels {self.levels}, width {self.width}: a search needs levels >= 1 and width >= 1")
        if self.ref_point is not None and len(self.ref_point) != len(self.objectives):
            raise ValueError(f"ref_point {list(self.ref_point)}: expected one value per objective "
                             f"({', '.join(self.objectives)})")


class Search:
    """An estimate-driven neuron-level search over the grid of a DataModule's shape."""

    def __init__(self, settings: SearchSettings, data, estimator: Estimator, config: dict | None = None,
                 rank_truth: Estimator | None = None) -> None:
        """``rank_truth``: the cheap standalone training the rank check (``rank_check_every``) holds the
        estimates against, e.g. ``TrainEstimator(data, steps=settings.rank_check_steps)``
        (``evolution.train_estimator.rank_check_truth``)."""
        if settings.rank_check_every and rank_truth is None:
            raise ValueError("rank_check_every needs a rank_truth estimator to check against "
                             "(evolution.train_estimator.rank_check_truth(data, settings))")
        self.rank_truth = rank_truth
        self.s = settings
        self.data = data
        self.estimator = estimator
        self.space = SearchSpace(tuple(data.input_shape), data.num_classes, settings.levels, settings.width,
                                 settings.channels)
        self.dir = Path(settings.run_dir)
        self.files = rundir.RunDir(self.dir)
        self._texts: dict[int, str] = {}  # candidate id -> its genome's JSON (_genome_json)
        if not self.files.exists():  # a new search: a bad spec or file is refused before its directory is made
            for source in dict.fromkeys(s for s in settings.init if s != "random"):
                self._seed_genome(source)  # (a resume never reads them: they may have moved since)
        self.config = config or {}
        # Plain JSON (what a state keeps, so a refused resume can name what differs); hashed as before.
        self.identity = json.loads(json.dumps(self._identity(), default=str))
        self.fingerprint = hashlib.sha1(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()
        self.rng = np.random.default_rng(settings.seed)
        self.population: list[Candidate] = []
        self.archive: list[Candidate] = []
        self.iteration = 0
        self.saved_iteration = 0  # the iteration state.pt holds, for a message on Ctrl-C
        self.next_id = 0
        self.hv: list[float] = []
        self.scale: list[float] = []
        # each iteration's front (objectives as searched), float64: one pickled object a front, not one a number
        self.fronts: list[torch.Tensor] = []
        self.checks: list[dict] = []
        self.last_check_tau = float("nan")
        self.tracker: Tracker | None = None
        if settings.executor != "local":
            self._use_executor()

    def _identity(self) -> dict:
        """What must match for a run directory to be resumed: all but the iteration budget and UI."""
        d = {k: v for k, v in asdict(self.s).items() if k not in ("iterations", "progress", "run_dir", "wandb")
             and k not in EXECUTION}
        cfg = {k: v for k, v in self.config.items() if k not in ("iterations", "progress", "run_dir", "resume", "config")}
        return {"settings": d, "config": cfg, "space": self.space.to_dict()}

    def _use_executor(self) -> None:
        from evolution.executor import make_executor

        if not hasattr(self.estimator, "use_executor"):
            raise ValueError(f"executor {self.s.executor!r}: {type(self.estimator).__name__} scores in this process; "
                             "training-based estimators (TrainEstimator) take an executor")
        self.estimator.use_executor(make_executor(self.s.executor, self.s.ray_address, self.s.ray_cpus,
                                                  self.s.ray_gpus, self.s.ray_retries))

    # --- candidates ----------------------------------------------------------------------------
    def _estimate(self, genomes: list[Genome], parents: list[Candidate | None], hows: list[Inheritance]) -> list[Candidate]:
        # The whole Inheritance goes to the estimator: a Net2Wider split needs its (original, copy) pairs.
        inherit = [None if p is None or p.state is None else Parent(p.state, h) for p, h in zip(parents, hows)]
        estimates: list[Estimate] = self.estimator.estimate(genomes, inherit)
        out = []
        for g, p, h, e in zip(genomes, parents, hows, estimates):
            m = h.mutation
            lat = cost.latency(SparseNet(g), repeats=5) if "latency" in self.s.objectives else float("nan")
            out.append(Candidate(self.next_id, g, None if p is None else p.id, m, self.iteration, float(e.score),
                                 cost.flops(g).total, cost.parameters(g), float(e.seconds), e.error, lat, e.state))
            self.next_id += 1
        return out

    def _seed_genome(self, source: str) -> Genome:
        """An initial genome from a spec (``mlp:64``) or a genome file, on the search's grid."""
        if source.endswith(".json"):
            g = Genome.load(source)
            if g.space != self.space:
                raise ValueError(f"initial genome {source} is on {g.space}, not on the search's grid {self.space}")
            return g
        return seeds.build(source, self.space)

    def _initial_genomes(self) -> list[Genome]:
        sources = [self.s.init[i % len(self.s.init)] for i in range(self.s.population)]
        return [random_genome(self.space, self.rng, density=self.s.density) if source == "random"
                else self._seed_genome(source) for source in sources]

    def _objectives(self, cands: list[Candidate]) -> np.ndarray:
        F = np.array([c.objectives(list(self.s.objectives)) for c in cands], dtype=float).reshape(len(cands), -1)
        return F / np.array(self.scale)

    # --- the loop ------------------------------------------------------------------------------
    def start(self) -> None:
        """Estimate the initial population (iteration 0) and save."""
        cands = self._estimate(self._initial_genomes(), [None] * self.s.population,
                               [Inheritance("init")] * self.s.population)
        ok = [c for c in cands if c.error is None]
        if not ok:
            # Divergence exits like divergence elsewhere (code 1), other failures as bad input.
            kind = FloatingPointError if all("diverged" in str(c.error) for c in cands) else ValueError
            raise kind(f"every initial genome failed to estimate; first error: {cands[0].error}")
        first = np.array([c.objectives(list(self.s.objectives)) for c in ok], dtype=float)
        self.scale = [1.0 if n == "error" else float(np.nanmax(first[:, i]) or 1.0)
                      for i, n in enumerate(self.s.objectives)]
        self.population = ok
        self._finish_iteration(cands)

    def step(self) -> None:
        """One iteration: tournament, mutation, estimation, aging, archive."""
        self.iteration += 1
        F = self._objectives(self.population)
        rank, crowd = nsga2.rank_and_crowding(F)
        picks = nsga2.tournament(rank, crowd, self.s.children, self.rng, size=min(self.s.tournament, len(F)))
        parents = [self.population[i] for i in picks]
        kids = [mutate(p.genome, self.rng, self.s.rates) for p in parents]
        cands = self._estimate([k[0] for k in kids], parents, [k[1] for k in kids])
        self.population += [c for c in cands if c.error is None]
        excess = len(self.population) - self.s.population
        if excess > 0:  # the oldest (lowest id) leave first: aging evolution, Real et al. 2019
            gone = set(nsga2.aging_removal(-np.array([c.id for c in self.population]), excess).tolist())
            self.population = sorted((c for i, c in enumerate(self.population) if i not in gone), key=lambda c: c.id)
        self._finish_iteration(cands)

    def _finish_iteration(self, cands: list[Candidate]) -> None:
        pool = self.archive + [c for c in cands if c.error is None]
        F = self._objectives(pool)
        self.archive = [pool[i] for i in nsga2.pareto_front(F)]
        Fa = self._objectives(self.archive)
        # Error lies in [0, 1]; the others are scaled by the initial population's largest value.
        ref = np.array(self.s.ref_point if self.s.ref_point else [1.0 if n == "error" else 2.0 for n in self.s.objectives])
        self.hv.append(float(nsga2.hypervolume(Fa, ref)))
        self.fronts.append(torch.tensor(Fa, dtype=torch.float64))
        if self.s.rank_check_every and self.iteration and self.iteration % self.s.rank_check_every == 0:
            self._rank_check()
        if hasattr(self.estimator, "update"):
            self.estimator.update([c.genome for c in self.population])
        self._save(cands)
        if self.tracker is not None:
            self.tracker.log_iteration(self)

    def _rank_check(self) -> None:
        """Online rank check: cheap standalone training of a few population members; the running
        Kendall tau of the estimates against it tells whether the estimator misleads the search."""
        from scipy.stats import kendalltau

        seen = {c["id"] for c in self.checks}
        pool = [c for c in self.population if c.id not in seen]
        if not pool:
            return
        pick = self.rng.choice(len(pool), size=min(self.s.rank_check_size, len(pool)), replace=False)
        chosen = [pool[i] for i in sorted(pick)]
        truth = self.rank_truth.estimate([c.genome for c in chosen])
        for c, t in zip(chosen, truth):
            if t.ok:
                self.checks.append({"id": c.id, "iteration": self.iteration, "estimate": c.score, "truth": t.score})
        est = [c["estimate"] for c in self.checks]
        tru = [c["truth"] for c in self.checks]
        tau = float(kendalltau(est, tru)[0]) if len(self.checks) >= 3 else float("nan")
        self.last_check_tau = tau
        line = {"iteration": self.iteration, "checked": len(self.checks), "kendall_tau": tau}
        with open(self.dir / "rank_check.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
        if np.isfinite(tau) and tau < self.s.rank_check_warn:
            print(f"\nwarning: the estimator's running Kendall tau against {len(self.checks)} retrained candidates is "
                  f"{tau:.2f} (< {self.s.rank_check_warn}): it may be misleading the search", file=sys.stderr)

    # --- files ---------------------------------------------------------------------------------
    def _save(self, cands: list[Candidate]) -> None:
        """Commit the iteration: genomes, history lines and front, then the state that counts them."""
        state = {
            "fingerprint": self.fingerprint, "identity": self.identity,
            "iteration": self.iteration, "next_id": self.next_id,
            "hv": self.hv, "scale": self.scale, "fronts": self.fronts,
            "checks": self.checks,
            "population": [self._pack(c) for c in self.population],
            "archive": [self._pack(c) for c in self.archive],
            "rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "py_rng": random.getstate(),
            # An estimator that learns as the search goes (a supernet's updates) resumes with it.
            "estimator": self.estimator.state_dict() if hasattr(self.estimator, "state_dict") else None,
        }
        self.files.commit(state, [(c.id, self._genome_json(c)) for c in cands], [c.record() for c in cands])
        self.saved_iteration = self.iteration
        # a candidate's genome never changes: its text is kept while it may be saved again
        keep = {c.id for c in self.population} | {c.id for c in self.archive}
        self._texts = {k: v for k, v in self._texts.items() if k in keep}

    def _genome_json(self, c: Candidate) -> str:
        """``c``'s genome as JSON, encoded once: every iteration saves the whole population and archive."""
        text = self._texts.get(c.id)
        if text is None:
            text = self._texts[c.id] = c.genome.to_json()
        return text

    def _pack(self, c: Candidate) -> dict:
        d = {k: v for k, v in c.__dict__.items() if k != "genome"}
        d["genome"] = self._genome_json(c)
        return d

    @staticmethod
    def _unpack(d: dict) -> Candidate:
        return Candidate(**{**d, "genome": Genome.from_json(d["genome"])})

    def exists(self) -> bool:
        return self.files.exists()

    def saved_state(self) -> dict:
        """The state committed by the last finished iteration, once checked to be this search's, with
        its history whole; nothing is changed (a caller may check before it writes anything)."""
        state = self.files.read_state()
        if state["fingerprint"] != self.fingerprint:
            changed = rundir.difference(state.get("identity"), self.identity)
            raise ValueError(f"run directory {self.dir} holds a different search: {changed}; "
                             "resume with the same config or use another --run_dir")
        return state

    def load(self) -> None:
        """Restore the state of the last finished iteration; cut history.jsonl back to it and rebuild
        the files derived from it (front, genomes)."""
        state, path = self.saved_state(), self.dir / STATE
        # before anything is cut: the config names the estimator's checkpoint by path only
        restore_estimator(self.estimator, state.get("estimator"), path)
        self.files.rebuild(state)
        self.iteration, self.next_id = state["iteration"], state["next_id"]
        self.saved_iteration = self.iteration
        self.hv, self.scale = state["hv"], state["scale"]
        # float64 tensors (lists in states saved before): the same numbers either way
        self.fronts = [torch.as_tensor(f, dtype=torch.float64).reshape(-1, len(self.s.objectives))
                       for f in state["fronts"]]
        self.checks = state.get("checks", [])
        self.population = [self._unpack(d) for d in state["population"]]
        self.archive = [self._unpack(d) for d in state["archive"]]
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["py_rng"])

    def run(self, resume: bool = False) -> bool:
        """Start or resume, then iterate to ``settings.iterations``; False when Ctrl-C stopped it
        (the state of the last finished iteration is kept). Holds the run directory's lock throughout."""
        with rundir.locked(self.dir):
            return self._run(resume)

    def _run(self, resume: bool) -> bool:
        self.tracker = Tracker(self.s.wandb, self.dir, {**self._identity(), "iterations": self.s.iterations})
        if resume:
            self.load()
        elif self.exists():
            raise ValueError(f"run directory {self.dir} already holds a search; resume it with --resume "
                             f"{self.dir} or choose another --run_dir")
        else:
            self.files.start()
            self.start()
        bar = None
        if self.s.progress:
            from tqdm import tqdm

            bar = tqdm(total=self.s.iterations, initial=self.iteration, desc="search", file=sys.stderr,
                       dynamic_ncols=True)
        try:
            while self.iteration < self.s.iterations:
                self.step()
                if bar is not None:
                    best = min(1 - c.score for c in self.archive)
                    bar.set_postfix(best_error=f"{best:.4f}", front=len(self.archive), hv=f"{self.hv[-1]:.4f}")
                    bar.update(1)
        except KeyboardInterrupt:
            # step() counts an iteration before estimating it: the one interrupted is not saved.
            print(f"\ninterrupted; iteration {self.saved_iteration} is saved; resume with --resume {self.dir}",
                  file=sys.stderr)
            return False
        finally:
            if bar is not None:
                bar.close()
            if self.fronts:
                from evolution.plots import plot_fronts

                plot_fronts([f.tolist() for f in self.fronts], list(self.s.objectives), self.dir / "front.png")
            if self.tracker is not None:
                if self.archive:
                    self.tracker.finish_search(self)
                self.tracker.close()
        return True


def main(args: list[str] | None = None) -> None:
    """``python -m evolution search``: see ``evolution.search_cli``."""
    from evolution.search_cli import main as cli

    cli(args)
