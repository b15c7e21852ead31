"""``LazyAdam``: Adam that moves only the entries a step's gradient touched."""
from __future__ import annotations

import torch


class LazyAdam(torch.optim.Optimizer):
    """Adam (Kingma & Ba 2015) restricted, per step, to the rows whose gradient is non-zero.

    A supernet step trains a few sub-genomes: the bank entries they do not use get an exactly zero
    gradient and must not move (plain Adam would keep moving them with stale momentum; the notes
    measured that this changes the rankings). ``torch.optim.SparseAdam`` does the same from sparse
    gradients but its sparse additions cost ~10x a step here; this works on dense gradients by
    index. Bias correction uses the per-tensor step count, as SparseAdam does.

    ``rows``: optional ``rows(param) -> index tensor or None``, the rows the step's forward passes
    gathered (duplicates allowed), which spares the scan for non-zero gradient rows.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 rows=None) -> None:
        if not lr >= 0 or not 0 <= betas[0] < 1 or not 0 <= betas[1] < 1 or not eps >= 0:
            raise ValueError(f"LazyAdam: lr {lr}, betas {betas}, eps {eps}: expected lr, eps >= 0 and betas in [0, 1)")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})
        self.rows_of = rows

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                rows = self.rows_of(p) if self.rows_of is not None else None
                if rows is None:
                    g = p.grad.reshape(len(p), -1)
                    touched = g.ne(0).squeeze(1) if g.shape[1] == 1 else g.ne(0).any(1)  # one pass for a column
                    rows = touched.nonzero().squeeze(1)
                if not len(rows):
                    continue
                st = self.state[p]
                if not st:
                    st["step"] = 0
                    st["m"] = torch.zeros_like(p)
                    st["v"] = torch.zeros_like(p)
                st["step"] += 1
                gr = p.grad[rows]
                m = st["m"][rows].mul_(b1).add_(gr, alpha=1 - b1)
                v = st["v"][rows].mul_(b2).addcmul_(gr, gr, value=1 - b2)
                st["m"][rows], st["v"][rows] = m, v
                c1, c2 = 1 - b1 ** st["step"], 1 - b2 ** st["step"]
                p[rows] -= group["lr"] * (m / c1) / ((v / c2).sqrt() + group["eps"])
        return loss
