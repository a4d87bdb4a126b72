"""Intervals from the curvature of the likelihood: utilities and position bias in one pass.

At the optimum x̂ of the objective (:mod:`fit._core`), with H its Hessian and sₖ the score (sum
of per-row gradients) of cluster c — an unordered pair, both presentation orders together — the
covariance of x̂ is estimated as

- ``"sandwich"`` (default): H⁻¹ J H⁻¹ · C/(C − P), J = Σ_c s_c s_cᵀ over the C clusters
  (cluster-robust; C/(C − P) for P parameters is the usual small-sample factor). It stays honest when labels are probabilities rather than coin flips (a
  soft label carries less or more information than one Bernoulli row) and when the model is
  only approximately right.
- ``"hessian"``: H⁻¹ in row units (each row one Bernoulli observation with its soft label).

The reported quantities are normalised — μ̃ = (μ − mean μ)/sd(μ) and β̃ = β/sd(μ) — and the
delta method carries the covariance to them, so the uncertainty of the normalisation itself is
included. The gauge penalties of the objective make H invertible without touching these
quantities: they are invariant along the gauge directions, where the data term is flat.

Up to :data:`fit._newton.DENSE_LIMIT` parameters H is formed and factorised densely (510
outcomes: ~1,000 parameters, tens of milliseconds) and the intervals are exact for the model.
Above, β's variance is still exact (one preconditioned conjugate-gradient solve on Hessian–vector
products), while each utility's variance uses its own 2×2 (μᵢ, tᵢ) block of H and J — the
conditional variance, which ignores the uncertainty of the outcome's neighbours and so is too
narrow: on 60 outcomes (all pairs) the median standard error was ~10 % below the exact one and
the most extreme outcomes' up to ~40 % below (``exact`` is False on such results).

Intervals are μ̃ ± z·se and β̃ ± z·se with z the normal quantile of the level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.linalg import cho_solve
from scipy.special import ndtri

from fit._core import FloatArray, Problem, split
from fit._hessian import HessianOperator, cluster_scores, curvature, dense_hessian
from fit._newton import DENSE_LIMIT, _block_preconditioner, _damped_cholesky

Method = Literal["sandwich", "hessian"]
METHODS = ("sandwich", "hessian")


@dataclass(frozen=True)
class StandardErrors:
    """Standard errors of the normalised utilities and of β̃ (single-model problem)."""

    mu_se: FloatArray
    """Standard error of each observed outcome's normalised utility, shape (observed,)."""
    beta_se: float | None
    """Standard error of β̃ (position problems), else None."""
    exact: bool
    """True when the full covariance was used (dense), False for the per-outcome blocks."""
    tie: float | None = None
    """β in noise units, :func:`tie_shift` (position problems), else None."""
    tie_se: float | None = None
    """Standard error of ``tie`` (exact in both paths: one solve with H), else None."""


def tie_shift(x: FloatArray, pr: Problem) -> tuple[float, FloatArray]:
    """β in noise units and its gradient in x: the shift a first listing adds to the probit
    (logit) of a choice between two outcomes of equal utility and average noise.

    Probit: g = β / √(2·mean t² + ε), so P(first chosen | tie) = Φ(g); it is invariant to the
    joint rescaling of μ, t and β (the gauge). Logit (Bradley–Terry, no noise parameters): g = β,
    P = sigmoid(g). Unlike β̃ = β/sd(μ) it does not involve the utilities' spread, whose ratio to
    the noise the active design overstates (docs/methods.md, "Position bias").
    """
    n, size = pr.n_outcomes, pr.n_params
    _, t, beta = split(x, pr)
    if beta is None:
        raise ValueError("tie_shift needs a problem with a position term")
    b = float(beta[0])
    grad = np.zeros(size)
    if t is None:
        grad[-1] = 1.0
        return b, grad
    d = 2.0 * float(np.mean(t**2)) + pr.eps
    grad[-1] = 1.0 / np.sqrt(d)
    grad[n : 2 * n] = -2.0 * b * t / (n * d**1.5)
    return b / np.sqrt(d), grad


def _delta_se(u: FloatArray, a: FloatArray, s, c: int, total: float, method: Method, pr) -> float:
    """Delta-method standard error of a scalar with gradient ``a``, given u = H⁻¹a."""
    if method == "sandwich":
        proj = s @ u
        var = float(proj @ proj) * _dof(c, pr)
    else:
        var = float(a @ u) * pr.n_outcomes / total
    return float(np.sqrt(max(var, 0.0)))


def z_value(level: float) -> float:
    """Normal quantile for a two-sided interval of coverage ``level``."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    return float(ndtri(0.5 + level / 2))


def _dof(clusters: int, pr: Problem) -> float:
    """Small-sample factor of the sandwich, C / (C − P) for C clusters and P parameters."""
    return clusters / max(clusters - pr.n_params, 1)


def _cluster_index(clusters: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    _, inverse = np.unique(clusters, return_inverse=True)
    return inverse.astype(np.int64)


def standard_errors(
    x: FloatArray,
    pr: Problem,
    clusters: npt.NDArray[np.int64],
    total: float,
    method: Method = "sandwich",
) -> StandardErrors:
    """Standard errors of μ̃ (and β̃) at the optimum ``x`` of a single-block problem.

    Args:
        x: the optimum.
        pr: the problem (one block).
        clusters: a cluster key per term (e.g. the unordered pair), shape (terms,).
        total: Σ nₖ, the number of rows (converts f's units to row units).
        method: ``"sandwich"`` or ``"hessian"`` (module docstring).

    Returns:
        The standard errors; NaN everywhere when all utilities are equal.
    """
    if method not in METHODS:
        raise ValueError(f"interval must be 'sandwich' or 'hessian', got {method!r}")
    if pr.n_blocks != 1:
        raise ValueError(f"intervals need a single-model problem, got {pr.n_blocks} blocks")
    n = pr.n_outcomes
    mu, _, beta = split(x, pr)
    centred = mu - mu.mean()
    sd = float(np.sqrt(np.mean(centred**2)))
    if not sd > 1e-12:
        if beta is None:
            return StandardErrors(np.full(n, np.nan), None, True)
        nan = float("nan")
        return StandardErrors(np.full(n, np.nan), nan, True, tie_shift(x, pr)[0], nan)
    mu_n = centred / sd
    beta_n = float(beta[0]) / sd if beta is not None else 0.0
    cv = curvature(x, pr)
    cl = _cluster_index(clusters)
    c = int(cl.max()) + 1
    s = cluster_scores(x, pr, cv, cl)
    if pr.n_params <= DENSE_LIMIT:
        return _dense(x, pr, cv, s, c, total, method, sd, mu_n, beta_n)
    return _large(x, pr, cv, s, c, total, method, sd, mu_n, beta_n)


def _dense(x, pr, cv, s, c, total, method, sd, mu_n, beta_n) -> StandardErrors:
    n, size = pr.n_outcomes, pr.n_params
    factor = _damped_cholesky(dense_hessian(x, pr, cv))
    sel = np.arange(n)
    if pr.position:
        sel = np.append(sel, size - 1)
    rhs = np.zeros((size, len(sel)))
    rhs[sel, np.arange(len(sel))] = 1.0
    rows = cho_solve(factor, rhs, check_finite=False).T  # H⁻¹ rows of μ (and β)
    x_mu = rows[:n]
    # Jacobian of μ̃ applied: A = (I − (1 1ᵀ + μ̃ μ̃ᵀ)/N)/sd on the μ coordinates.
    z = (x_mu - x_mu.mean(axis=0) - np.outer(mu_n, mu_n @ x_mu) / n) / sd
    if pr.position:
        z = np.vstack([z, rows[n] / sd - beta_n * (mu_n @ x_mu) / (n * sd)])
    if method == "sandwich":
        j = (s.T @ s).toarray()
        var = np.einsum("ij,ij->i", z @ j, z) * _dof(c, pr)
    else:
        # A H⁻¹ Aᵀ: apply the rows of A to the rows of Z = A H⁻¹.
        zm = z[:, :n]
        var = np.empty(len(z))
        var[:n] = (np.diag(zm[:n]) - zm[:n].mean(axis=1) - mu_n * (zm[:n] @ mu_n) / n) / sd
        if pr.position:
            var[n] = z[n, size - 1] / sd - beta_n * float(zm[n] @ mu_n) / (n * sd)
        var = var * (n / total)
    se = np.sqrt(np.maximum(var, 0.0))
    if not pr.position:
        return StandardErrors(se[:n], None, True)
    tie, a = tie_shift(x, pr)
    tie_se = _delta_se(cho_solve(factor, a, check_finite=False), a, s, c, total, method, pr)
    return StandardErrors(se[:n], float(se[n]), True, tie, tie_se)


def _solve(op: HessianOperator, rhs: FloatArray, tol: float = 1e-10, max_iter: int = 500):
    """H u = rhs by preconditioned conjugate gradients (H positive definite at the optimum)."""
    precond = _block_preconditioner(op)
    u = np.zeros_like(rhs)
    r = rhs.copy()
    y = precond(r)
    d = y.copy()
    ry = float(r @ y)
    stop = tol * float(np.linalg.norm(rhs))
    for _ in range(max_iter):
        hd = op.matvec(d)
        alpha = ry / float(d @ hd)
        u += alpha * d
        r -= alpha * hd
        if float(np.linalg.norm(r)) <= stop:
            break
        y = precond(r)
        ry_new = float(r @ y)
        d = y + (ry_new / ry) * d
        ry = ry_new
    return u


def _large(x, pr, cv, s, c, total, method, sd, mu_n, beta_n) -> StandardErrors:
    n, size = pr.n_outcomes, pr.n_params
    op = HessianOperator(x, pr, cv)
    mm, mt, tt = op.block_diagonal()
    mm = mm[:n]
    if method == "sandwich":
        sq = s.multiply(s).sum(axis=0).A1
        jmm = sq[:n]
        if mt is not None and tt is not None:
            jmt = s[:, :n].multiply(s[:, n : 2 * n]).sum(axis=0).A1
            jtt = sq[n : 2 * n]
            det = mm * tt - mt * mt
            # first row of D⁻¹ = (tt, −mt)/det; var = row · J_block · rowᵀ
            var_mu = (tt * tt * jmm - 2 * tt * mt * jmt + mt * mt * jtt) / det**2
        else:
            var_mu = jmm / mm**2
        var_mu = var_mu * _dof(c, pr)
    else:
        inv = tt / (mm * tt - mt * mt) if mt is not None and tt is not None else 1.0 / mm
        var_mu = inv * (n / total)
    mu_se = np.sqrt(np.maximum(var_mu, 0.0)) / sd
    if not pr.position:
        return StandardErrors(mu_se, None, False)
    a = np.zeros(size)
    a[-1] = 1.0 / sd
    a[:n] = -beta_n * mu_n / (n * sd)
    beta_se = _delta_se(_solve(op, a), a, s, c, total, method, pr)
    tie, a = tie_shift(x, pr)
    tie_se = _delta_se(_solve(op, a), a, s, c, total, method, pr)
    return StandardErrors(mu_se, beta_se, False, tie, tie_se)
