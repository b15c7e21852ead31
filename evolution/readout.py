"""The closed-form ridge readout: refit a network's output level on the features its hidden levels
compute (``ridge_readout``, what the estimators' ``readout`` option scores with) and train through
that refit (``readout_loss``, the fit modules' ``readout`` option)."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from evolution.network import Plan, Weights, level_outputs


class Readout(NamedTuple):
    """The output level's inputs as one feature matrix: ``feats`` ``(B, F)`` over the distinct
    neurons that feed outputs; per output edge, its feature column ``col``, its output ``dst`` and
    its index ``edge`` into the genome's edge vector."""

    feats: Tensor
    col: Tensor
    dst: Tensor
    edge: Tensor


def readout_features(plan: Plan, acts: list[Tensor]) -> Readout | None:
    """``Readout`` of ``level_outputs``' activations; None when no edge reaches an output."""
    pairs = plan.pairs_into[-1]
    if not pairs:
        return None
    # One feature matrix over the distinct neurons that feed outputs, so the ten per-output
    # systems share one Gram matrix (ten separate ones cost 10x on a dense output level).
    used = [torch.unique(p.flat // p.n_dst, return_inverse=True) for p in pairs]
    feats = torch.cat([acts[p.src_level].index_select(1, u) for p, (u, _) in zip(pairs, used)], 1)
    offsets = np.cumsum([0] + [len(u) for u, _ in used])
    col = torch.cat([inv + int(off) for (_, inv), off in zip(used, offsets)])
    return Readout(feats, col, torch.cat([p.flat % p.n_dst for p in pairs]), torch.cat([p.edges for p in pairs]))


def ridge_solve(r: Readout, y: Tensor, n_outputs: int, ridge: float = 1.0) -> tuple[Tensor, Tensor]:
    """Per output neuron, ridge regression of its one-hot target on the features its edges read,
    plus its bias (not shrunk): ``(coef per output edge, bias per output)``, in float64 (the Gram
    matrix of float32 features accumulated in float32).
    Differentiable in ``r.feats`` (a hypernet can train through it: Bertinetto et al. 2019)."""
    feats = r.feats.double()
    target = F.one_hot(y, n_outputs).to(feats.dtype)
    rhs, sums, counts = feats.T @ target, feats.sum(0), target.sum(0)
    if r.feats.dtype == torch.float64:
        gram = feats.T @ feats
    else:
        # The Gram matrix, the one large product, in float32 (about twice float64's speed), of features
        # centred by a float32 mean m, so its rounding scales with their spread, not their offset; exact
        # in float64: X^T X = (X - m)^T (X - m) + m s^T + s m^T - n m m^T, with s the column sums.
        low = r.feats.float()
        m = low.mean(0)
        c = low - m
        m = m.double()
        gram = (c.T @ c).double() + torch.outer(m, sums) + torch.outer(sums, m) - len(low) * torch.outer(m, m)
    coef, bias, sels = [], [], []
    for o in range(n_outputs):
        sel = (r.dst == o).nonzero().squeeze(1)
        c, k = r.col[sel], len(sel)
        sels.append(sel)
        # [features | 1]^T [features | 1], ridge on the features only
        top = torch.cat([gram[c[:, None], c] + ridge * torch.eye(k, dtype=gram.dtype, device=gram.device),
                         sums[c, None]], 1)
        bottom = torch.cat([sums[c], counts.new_full((1,), float(len(y)))])[None]
        sol = torch.linalg.solve(torch.cat([top, bottom]), torch.cat([rhs[c, o], counts[o:o + 1]]))
        coef.append(sol[:k])
        bias.append(sol[k:])
    coef = torch.cat(coef)  # grouped by output: back to the order of the output edges
    return torch.empty_like(coef).scatter(0, torch.cat(sels), coef), torch.cat(bias)


def readout_logits(r: Readout, coef: Tensor, bias: Tensor) -> Tensor:
    """Logits ``(B, n_outputs)`` of a fitted readout on ``r.feats``."""
    terms = r.feats.index_select(1, r.col) * coef.to(r.feats.dtype)
    return bias.to(r.feats.dtype).expand(len(r.feats), -1).index_add(1, r.dst, terms)


def readout_loss(plan: Plan, weights: Weights, x: Tensor, y: Tensor, support: int, ridge: float,
                 scale: Tensor) -> Tensor:
    """Cross-entropy on ``x[support:]`` of the network plus that of its output level refitted by
    ``ridge_solve`` on ``x[:support]``, its logits times ``scale``. Trains the hidden levels (of a
    hypernet's predictions, a supernet's bank) for the closed-form readout that then scores them, as
    R2D2 (Bertinetto et al. 2019) trains a feature extractor through a differentiable ridge solver.
    A batch of at most ``2 * support`` examples (an epoch's short last one) fits on half of them;
    one of a single example has nothing to fit on and gives the plain cross-entropy."""
    support = min(support, len(y) // 2)
    acts = level_outputs(plan, weights, x)
    loss = F.cross_entropy(acts[-1][support:], y[support:])
    r = readout_features(plan, acts)
    if r is None or not support:
        return loss
    coef, bias = ridge_solve(r._replace(feats=r.feats[:support]), y[:support], plan.n_outputs, ridge)
    query = readout_logits(r._replace(feats=r.feats[support:]), coef, bias)
    return loss + F.cross_entropy(scale * query.to(scale.dtype), y[support:])


@torch.no_grad()
def ridge_readout(plan: Plan, weights: Weights, x: Tensor, y: Tensor, ridge: float = 1.0) -> Weights:
    """``weights`` with the output level refitted in closed form on ``(x, y)`` (``ridge_solve``). The
    hidden levels keep their weights, so the score that follows measures the features they compute
    rather than how well the output weights were matched to them. Tied output edges are fitted one by one."""
    r = readout_features(plan, level_outputs(plan, weights, x))
    if r is None:  # no edge reaches an output: nothing to refit
        return weights
    coef, bias = ridge_solve(r, y, plan.n_outputs, ridge)
    edge = weights.edge.detach().clone()
    edge[r.edge] = coef.to(edge.dtype)
    return weights._replace(edge=edge, bias=bias.to(weights.bias.dtype))
