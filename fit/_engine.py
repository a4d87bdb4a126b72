"""From statistics to results: validation, unobserved outcomes, warm starts, normalisation.

Every estimator (numpy or torch, single or batched, with or without position bias) goes through
:func:`fit_blocks`; they differ only in the link, the parameters and the solver passed in.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.special import ndtri

from fit._core import Block, Link, Problem, Solution, block_loss, build, split
from fit._newton import newton
from fit.errors import (
    DisconnectedGraphWarning,
    EmptyDataError,
    NotConvergedWarning,
    UnobservedOutcomesError,
)
from fit.result import FitResult
from fit.stats import OrientedStats, PairStats

logger = logging.getLogger(__name__)
Solver = Callable[..., Solution]


@dataclass(frozen=True)
class Prepared:
    """A block in compressed indices plus the map back to the caller's outcome indices."""

    block: Block
    observed: npt.NDArray[np.bool_]  # over the caller's N outcomes
    all_observed: bool


def _terms(stats: PairStats | OrientedStats) -> tuple[np.ndarray, ...]:
    if isinstance(stats, OrientedStats):
        return stats.first, stats.second, stats.n, stats.p_first
    return stats.i, stats.j, stats.n, stats.p


def prepare(
    stats: PairStats | OrientedStats, allow_unobserved: bool, check_connected: bool, label: str
) -> Prepared:
    """Drop zero-weight terms, find unobserved outcomes and compress indices to observed ones."""
    a, b, n, p = _terms(stats)
    size = stats.n_outcomes
    keep = n > 0
    if not keep.any():
        raise EmptyDataError(
            f"{label}: no pairs with positive weight ({len(n)} records); nothing to fit"
        )
    if not keep.all():
        a, b, n, p = a[keep], b[keep], n[keep], p[keep]
    weight = np.bincount(a, n, size) + np.bincount(b, n, size)
    observed = weight > 0
    missing = np.flatnonzero(~observed)
    if missing.size and not allow_unobserved:
        raise UnobservedOutcomesError(
            f"{label}: {missing.size} of {size} outcomes appear in no pair, e.g. indices "
            f"{missing[:10].tolist()}; their utilities are not identified — add comparisons or "
            "pass allow_unobserved=True (they then get mu = 0, sigma2 = inf, observed = False)",
            missing.tolist(),
        )
    m = int(observed.sum())
    if m < size:
        local = np.cumsum(observed) - 1
        a, b = local[a], local[b]
    if check_connected and m > 1:
        graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(m, m))
        n_comp, _ = connected_components(graph, directed=False)
        if n_comp > 1:
            warnings.warn(
                f"{label}: the comparison graph has {n_comp} connected components; utilities "
                "of different components are not comparable (add pairs that join them)",
                DisconnectedGraphWarning,
                stacklevel=4,
            )
    return Prepared(Block(a, b, n, p, m), observed, not missing.size)


def linear_start(pr: Problem, max_iter: int = 30) -> np.ndarray:
    """A cold start from the linearised model: least squares of the link's inverse on the labels.

    Each term says d = μ_a − μ_b (+ β) ≈ √(2 + ε)·Φ⁻¹(p) (probit with σ² = 1) or logit(p), with
    p clipped to [0.02, 0.98]. The weighted normal equations (a graph Laplacian, plus β) are
    solved roughly by Jacobi-preconditioned conjugate gradients, matrix-free (a few scatter-adds
    over the terms per iteration). Returns x with μ (and β) filled, mean μ 0 per block.
    """
    p = np.clip(pr.p, 0.02, 0.98)
    target = np.sqrt(2.0 + pr.eps) * ndtri(p) if pr.link == "probit" else np.log(p / (1 - p))
    n, nb, w = pr.n_outcomes, pr.n_blocks, pr.w

    def scatter(val: np.ndarray) -> np.ndarray:
        out = np.bincount(pr.a, val, n) - np.bincount(pr.b, val, n)
        if pr.position:
            out = np.concatenate([out, np.bincount(pr.term_block, val, nb)])
        return out

    def apply(x: np.ndarray) -> np.ndarray:
        d = x[pr.a] - x[pr.b]
        if pr.position:
            d = d + x[n + pr.term_block]
        return scatter(w * d)

    diag = np.bincount(pr.a, w, n) + np.bincount(pr.b, w, n)
    if pr.position:
        diag = np.concatenate([diag, np.bincount(pr.term_block, w, nb)])
    diag = np.maximum(diag, 1e-12)
    rhs = scatter(w * target)
    sol = np.zeros_like(rhs)
    r = rhs.copy()
    y = r / diag
    d = y.copy()
    ry = float(r @ y)
    stop = 1e-3 * float(np.linalg.norm(rhs))
    for _ in range(max_iter):
        if not ry > 0 or float(np.linalg.norm(r)) <= stop:
            break
        hd = apply(d)
        curv = float(d @ hd)
        if not curv > 0:
            break
        step = ry / curv
        sol += step * d
        r -= step * hd
        y = r / diag
        ry_new = float(r @ y)
        d = y + (ry_new / ry) * d
        ry = ry_new
    sol[:n] -= (np.bincount(pr.outcome_block, sol[:n]) / pr.sizes)[pr.outcome_block]
    x = np.zeros(pr.n_params)
    x[:n] = sol[:n]
    if pr.position:
        x[pr.n_params - nb :] = sol[n:]
    return x


def initial_x(
    pr: Problem, prepared: Sequence[Prepared], init: Sequence[FitResult | None]
) -> np.ndarray:
    """Start point: the linearised least-squares fit, or a previous fit mapped back into the
    optimiser's gauge (``init``)."""
    x = linear_start(pr) if any(res is None for res in init) else np.zeros(pr.n_params)
    mu, s, _ = split(x, pr)
    if s is not None:
        s[:] = 1.0  # t = 0 is a stationary point in t; start away from it
    for k, (prep, res) in enumerate(zip(prepared, init, strict=True)):
        if res is None:
            continue
        lo, hi = pr.offsets[k], pr.offsets[k + 1]
        mu[lo:hi] = res.mu[prep.observed] * res.scale
        if s is not None and res.sigma2 is not None:
            raw = np.sqrt(res.sigma2[prep.observed]) * res.scale
            # keep t off 0 so its gradient is not identically zero; inf (unobserved) → 1
            s[lo:hi] = np.where(np.isfinite(raw), np.maximum(raw, 1e-3), 1.0)
    return x


def assemble(
    pr: Problem, sol: Solution, prepared: Sequence[Prepared], estimator: str
) -> tuple[list[FitResult], list[float]]:
    """Normalise each block to mean 0 / sd 1 and expand to the caller's indexing.

    Returns:
        The results and, for position problems, β per block on the ``mu`` scale (else zeros).
    """
    mu_all, s_all, beta_all = split(sol.x, pr)
    losses = block_loss(sol.x, pr)
    results, betas = [], []
    for k, prep in enumerate(prepared):
        lo, hi = pr.offsets[k], pr.offsets[k + 1]
        mu = mu_all[lo:hi]
        sd = float(mu.std())
        if not np.isfinite(sd) or sd < 1e-12:
            sd = 1.0
        size = len(prep.observed)
        mu_full = np.zeros(size)
        mu_full[prep.observed] = (mu - mu.mean()) / sd
        sigma2 = None
        eps = 0.0
        if pr.link == "probit":
            sigma2 = np.full(size, np.inf)
            raw = s_all[lo:hi] ** 2 if s_all is not None else np.ones(hi - lo)
            sigma2[prep.observed] = raw / sd**2
            eps = pr.eps / sd**2
        betas.append(float(beta_all[k]) / sd if beta_all is not None else 0.0)
        results.append(
            FitResult(
                mu=mu_full,
                sigma2=sigma2,
                iterations=sol.iterations,
                converged=sol.converged,
                loss=float(losses[k]),
                estimator=estimator,
                seconds=sol.seconds,
                scale=sd,
                eps=eps,
                observed=None if prep.all_observed else prep.observed,
            )
        )
    return results, betas


def fit_blocks(
    stats: Sequence[PairStats | OrientedStats],
    *,
    link: Link,
    hetero: bool,
    position: bool,
    estimator: str,
    eps: float,
    l2: float,
    var_prior: float = 0.0,
    max_iter: int,
    gtol: float,
    ftol: float,
    allow_unobserved: bool,
    check_connected: bool,
    init: FitResult | Sequence[FitResult | None] | None,
    solver: Solver = newton,
) -> tuple[list[FitResult], list[float], Problem, Solution]:
    """Fit every block in one optimiser run; see :mod:`fit._core` for the objective."""
    t0 = time.perf_counter()
    if len(stats) == 0:
        raise EmptyDataError("no statistics given; pass at least one PairStats")
    if eps < 0 or l2 < 0 or var_prior < 0 or max_iter < 1 or gtol <= 0:
        raise ValueError(
            f"need eps >= 0, l2 >= 0, var_prior >= 0, max_iter >= 1, gtol > 0; got eps={eps}, "
            f"l2={l2}, var_prior={var_prior}, max_iter={max_iter}, gtol={gtol}"
        )
    inits: list[FitResult | None]
    if init is None or isinstance(init, FitResult):
        inits = [init] * len(stats)
    else:
        inits = list(init)
        if len(inits) != len(stats):
            raise ValueError(f"init has {len(inits)} entries for {len(stats)} statistics")
    for st, res in zip(stats, inits, strict=True):
        if res is not None and res.n_outcomes != st.n_outcomes:
            raise ValueError(f"init has {res.n_outcomes} outcomes, data has {st.n_outcomes}")
    label = "fit" if len(stats) == 1 else "fit of model {}"
    prepared = [
        prepare(st, allow_unobserved, check_connected, label.format(k))
        for k, st in enumerate(stats)
    ]
    pr = build([p.block for p in prepared], link, hetero, position, eps, l2, var_prior)
    x0 = initial_x(pr, prepared, inits)
    sol = solver(pr, x0, max_iter=max_iter, gtol=gtol, ftol=ftol)
    sol = replace(sol, seconds=time.perf_counter() - t0)  # preparation included
    if not sol.converged:
        warnings.warn(
            f"{estimator}: optimiser stopped after {sol.iterations} iterations without meeting "
            f"its tolerance ({sol.message}); raise max_iter or loosen gtol",
            NotConvergedWarning,
            stacklevel=3,
        )
    logger.debug(
        "%s: %d blocks, %d params, %d iterations, %.3fs",
        estimator,
        len(stats),
        pr.n_params,
        sol.iterations,
        sol.seconds,
    )
    results, betas = assemble(pr, sol, prepared, estimator)
    return results, betas, pr, sol
