"""The Thurstonian (and Bradley–Terry) objective on torch, for GPUs and very large problems.

Same model, loss, gauge and normalisation as :mod:`fit.thurstonian` and :mod:`fit._core` — only
the arithmetic runs in torch (scatter-adds with ``index_add_``, analytic gradient, no autograd
graph) and the optimiser is ``torch.optim.LBFGS`` with a strong-Wolfe line search, in float64 by
default. Results equal the numpy path's within the optimisers' tolerance.

torch is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from fit._core import Problem, Solution
from fit._engine import fit_blocks
from fit.result import BRADLEY_TERRY, THURSTONIAN, THURSTONIAN_HOMOSCEDASTIC, FitResult
from fit.stats import PairStats

__all__ = ["fit_thurstonian_torch", "fit_thurstonian_batch_torch", "fit_bradley_terry_torch"]


def _tensors(pr: Problem, device: str, dtype: Any) -> dict[str, Any]:
    import torch

    def t(a: np.ndarray, dt: Any = dtype) -> Any:
        return torch.as_tensor(a, device=device, dtype=dt)

    return {
        "a": t(pr.a, torch.int64),
        "b": t(pr.b, torch.int64),
        "w": t(pr.w),
        "p": t(pr.p),
        "ob": t(pr.outcome_block, torch.int64),
        "sizes": t(pr.sizes),
        "prior": t(pr.prior_scale),
    }


def _value_grad(x: Any, pr: Problem, tt: dict[str, Any]) -> tuple[Any, Any]:
    """Torch twin of :func:`fit._core.value_grad` (position terms are numpy-only)."""
    import torch

    n, nb = pr.n_outcomes, pr.n_blocks
    a, b, w, p, ob, sizes = tt["a"], tt["b"], tt["w"], tt["p"], tt["ob"], tt["sizes"]
    mu = x[:n]
    d = mu[a] - mu[b]
    grad = torch.zeros_like(x)
    if pr.link == "logit":
        loss = torch.nn.functional.softplus(d) - p * d
        gd = w * (torch.sigmoid(d) - p)
    else:
        if pr.hetero:
            t = x[n : 2 * n]
            sig2 = t * t
            v = sig2[a] + sig2[b] + pr.eps
        else:
            v = torch.full_like(d, 2.0 + pr.eps)
        r = torch.rsqrt(v)
        z = d * r
        lp = torch.special.log_ndtr(z)
        lq = torch.special.log_ndtr(-z)
        logphi = -0.5 * z * z - 0.5 * math.log(2 * math.pi)
        gz = (1.0 - p) * torch.exp(logphi - lq) - p * torch.exp(logphi - lp)
        loss = -(p * lp + (1.0 - p) * lq)
        gd = w * gz * r
        if pr.hetero:
            gv = w * (-0.5) * gz * z / v
            acc = torch.zeros(n, dtype=x.dtype, device=x.device)
            acc.index_add_(0, a, gv).index_add_(0, b, gv)
            excess = torch.zeros(nb, dtype=x.dtype, device=x.device).index_add_(0, ob, t * t)
            excess = excess / sizes - 1.0
            grad[n : 2 * n] = 2.0 * t * acc + 4.0 * excess[ob] * t
    f = torch.dot(w, loss)
    grad[:n].index_add_(0, a, gd).index_add_(0, b, -gd)
    mean_mu = torch.zeros(nb, dtype=x.dtype, device=x.device).index_add_(0, ob, mu) / sizes
    f = f + torch.dot(sizes, mean_mu**2)
    grad[:n] += 2.0 * mean_mu[ob]
    if pr.link == "probit" and pr.hetero:
        f = f + torch.dot(sizes, excess**2)
    if pr.l2 > 0:
        c = pr.l2 * tt["prior"]
        f = f + 0.5 * torch.dot(c, mu * mu)
        grad[:n] += c * mu
    if pr.link == "probit" and pr.hetero and pr.var_prior > 0:
        log_var = torch.log(torch.clamp(t * t, min=1e-300))
        mean = torch.zeros(nb, dtype=x.dtype, device=x.device).index_add_(0, ob, log_var) / sizes
        dev = log_var - mean[ob]
        c = pr.var_prior * tt["prior"]
        f = f + 0.5 * torch.dot(c, dev * dev)
        grad[n : 2 * n] += c * dev * 2.0 / t
    return f, grad


def _solver(device: str, dtype: Any, history: int) -> Any:
    def solve(pr: Problem, x0: np.ndarray, *, max_iter: int, gtol: float, ftol: float) -> Solution:
        import torch

        if pr.position:
            raise NotImplementedError("position-bias fits run on the numpy path (fit.position)")
        t0 = time.perf_counter()
        tt = _tensors(pr, device, dtype)
        x = torch.tensor(x0, device=device, dtype=dtype, requires_grad=True)
        with torch.no_grad():
            f0 = float(_value_grad(x, pr, tt)[0])
        opt = torch.optim.LBFGS(
            [x],
            lr=1.0,
            max_iter=max_iter,
            max_eval=4 * max_iter,
            tolerance_grad=gtol,
            tolerance_change=ftol * max(1.0, abs(f0)),
            history_size=history,
            line_search_fn="strong_wolfe",
        )

        def closure() -> Any:
            with torch.no_grad():
                f, g = _value_grad(x, pr, tt)
            x.grad = g
            return f

        opt.step(closure)
        iterations = int(opt.state[x]["n_iter"])
        with torch.no_grad():
            gmax = float(_value_grad(x, pr, tt)[1].abs().max())
        converged = iterations < max_iter or gmax <= gtol
        message = f"torch LBFGS: {iterations} iterations, max |grad| = {gmax:.3g}"
        x_np = x.detach().to("cpu", torch.float64).numpy().copy()
        return Solution(x_np, iterations, converged, message, time.perf_counter() - t0)

    return solve


def fit_thurstonian_batch_torch(
    stats: Sequence[PairStats],
    *,
    device: str = "cpu",
    dtype: str = "float64",
    heteroscedastic: bool = True,
    eps: float = 1e-6,
    l2: float = 0.0,
    var_prior: float = 1.0,
    max_iter: int = 2000,
    gtol: float = 1e-6,
    ftol: float = 1e-13,
    history: int = 20,
    allow_unobserved: bool = False,
    check_connected: bool = True,
    init: FitResult | Sequence[FitResult | None] | None = None,
) -> list[FitResult]:
    """:func:`~fit.thurstonian.fit_thurstonian_batch` on torch.

    Args:
        device: torch device, e.g. ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
        dtype: ``"float64"`` (default; matches numpy) or ``"float32"`` (faster on GPUs, looser:
            use gtol ≥ 1e-4 with it).
        history: L-BFGS history size.
        (others as :func:`~fit.thurstonian.fit_thurstonian_batch`)

    Returns:
        One :class:`~fit.result.FitResult` per model.
    """
    import torch

    results, _, _, _ = fit_blocks(
        stats,
        link="probit",
        hetero=heteroscedastic,
        position=False,
        estimator=THURSTONIAN if heteroscedastic else THURSTONIAN_HOMOSCEDASTIC,
        eps=eps,
        l2=l2,
        var_prior=var_prior,
        max_iter=max_iter,
        gtol=gtol,
        ftol=ftol,
        allow_unobserved=allow_unobserved,
        check_connected=check_connected,
        init=init,
        solver=_solver(device, getattr(torch, dtype), history),
    )
    return results


def fit_thurstonian_torch(stats: PairStats, **kwargs: Any) -> FitResult:
    """:func:`~fit.thurstonian.fit_thurstonian` on torch; keyword arguments as
    :func:`fit_thurstonian_batch_torch` (``device="cuda"`` for a GPU)."""
    return fit_thurstonian_batch_torch([stats], **kwargs)[0]


def fit_bradley_terry_torch(
    stats: PairStats,
    *,
    device: str = "cpu",
    dtype: str = "float64",
    l2: float = 0.0,
    max_iter: int = 2000,
    gtol: float = 1e-6,
    ftol: float = 1e-13,
    allow_unobserved: bool = False,
    init: FitResult | None = None,
) -> FitResult:
    """:func:`~fit.bradley_terry.fit_bradley_terry` on torch (arguments as there, plus device
    and dtype as :func:`fit_thurstonian_batch_torch`)."""
    import torch

    results, _, _, _ = fit_blocks(
        [stats],
        link="logit",
        hetero=False,
        position=False,
        estimator=BRADLEY_TERRY,
        eps=0.0,
        l2=l2,
        max_iter=max_iter,
        gtol=gtol,
        ftol=ftol,
        allow_unobserved=allow_unobserved,
        check_connected=True,
        init=init,
        solver=_solver(device, getattr(torch, dtype), 20),
    )
    return results[0]
