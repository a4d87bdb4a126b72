"""Shared numerics of every estimator: the stacked problem, its objective and gradient, L-BFGS.

Several models ("blocks") are stacked into one block-diagonal problem so that one optimiser run
fits them all. Parameters, for N = total outcomes over blocks and B blocks:

    x = [μ (N), t (N, heteroscedastic probit only), β (B, position variants only)]

with σ² = t². A term k compares outcome a_k with b_k (global indices) and has weight n_k and soft
label p_k (P(a ≻ b), or P(first wins) for position variants). With dₖ = μ_a − μ_b (+ β of its
block):

    probit: zₖ = dₖ / √vₖ, vₖ = t_a² + t_b² + ε (or 2 + ε homoscedastic), qₖ = Φ(zₖ)
    logit:  qₖ = sigmoid(dₖ)
    ℓₖ = −pₖ log qₖ − (1 − pₖ) log(1 − qₖ)

    f(x) = Σ_blocks N_b · (Σ_{k∈b} nₖ ℓₖ / Σ_{k∈b} nₖ)               data: N_b × mean loss
         + Σ_blocks N_b · (mean_b μ)² [+ N_b · (mean_b t² − 1)²]      gauge
         + Σ_blocks (N_b / W_b) · [l2/2 · Σ μ² + λ/2 · Σ (log t² − mean log t²)²]   priors

Scaling each block's mean loss by its size N_b keeps every gradient component O(1) however large
the problem, so one gradient tolerance means the same for 50 outcomes and 100,000. The gauge
terms pin the directions the data term is flat along (a shift of μ; up to ε, a joint rescaling of
μ and t) and vanish there, so they fix the gauge without biasing anything. The priors are scaled
by N_b / W_b (W_b = Σ nₖ of the block) so that their strengths count pseudo-observations.

Why σ² = t² rather than exp(s): the likelihood often has its maximum at σᵢ² = 0 for some outcomes
(an outcome whose partners' variances dominate), which exp(s) reaches only as s → −∞ with a
vanishing gradient — thousands of slow iterations. With t the boundary is t = 0, an ordinary
interior point (the objective is even in t), so L-BFGS converges there quickly. t starts at 1,
never at 0 (where its gradient vanishes by symmetry).

Gradients are scatter-adds (np.bincount) over terms.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.optimize import OptimizeResult, minimize
from scipy.special import expit, log_ndtr

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Link = Literal["probit", "logit"]
_HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)


@dataclass(frozen=True)
class Block:
    """One model's data in local indices: terms (a, b, n, p) over ``n_outcomes`` outcomes."""

    a: IntArray
    b: IntArray
    n: FloatArray
    p: FloatArray
    n_outcomes: int


@dataclass(frozen=True)
class Problem:
    """Blocks stacked with global indices; see the module docstring for the objective."""

    a: IntArray
    b: IntArray
    w: FloatArray  # nₖ · N_b / W_b
    p: FloatArray
    term_block: IntArray
    outcome_block: IntArray
    sizes: FloatArray  # N_b
    offsets: IntArray  # first global outcome index of each block, length B + 1
    link: Link
    hetero: bool
    position: bool
    eps: float
    l2: float
    var_prior: float
    prior_scale: FloatArray  # N_b / W_b per outcome: one pseudo-observation in f's units

    @property
    def n_outcomes(self) -> int:
        return int(self.offsets[-1])

    @property
    def n_blocks(self) -> int:
        return len(self.sizes)

    @property
    def n_params(self) -> int:
        n = self.n_outcomes
        return n * (2 if self.hetero else 1) + (self.n_blocks if self.position else 0)


def build(
    blocks: list[Block],
    link: Link,
    hetero: bool,
    position: bool,
    eps: float,
    l2: float,
    var_prior: float = 0.0,
) -> Problem:
    """Stack blocks into one problem (global outcome index = block offset + local index)."""
    sizes = np.array([blk.n_outcomes for blk in blocks], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    counts = np.array([len(blk.n) for blk in blocks], dtype=np.int64)
    term_block = np.repeat(np.arange(len(blocks), dtype=np.int64), counts)
    n = np.concatenate([blk.n for blk in blocks]) if len(blocks) > 1 else blocks[0].n
    totals = np.array([blk.n.sum() for blk in blocks])
    outcome_block = np.repeat(np.arange(len(blocks), dtype=np.int64), sizes)
    if len(blocks) == 1:  # one model: its local indices are global, nothing to copy
        a, b, p = blocks[0].a, blocks[0].b, blocks[0].p
        w = n * float(sizes[0] / totals[0])
    else:
        shift = offsets[:-1][term_block]
        a = np.concatenate([blk.a for blk in blocks]) + shift
        b = np.concatenate([blk.b for blk in blocks]) + shift
        p = np.concatenate([blk.p for blk in blocks])
        w = n * (sizes / totals)[term_block]
    return Problem(
        a=np.asarray(a, dtype=np.int64),
        b=np.asarray(b, dtype=np.int64),
        w=w,
        p=p,
        term_block=term_block,
        outcome_block=outcome_block,
        sizes=sizes.astype(np.float64),
        offsets=offsets,
        link=link,
        hetero=hetero and link == "probit",
        position=position,
        eps=float(eps),
        l2=float(l2),
        var_prior=float(var_prior),
        prior_scale=(sizes / totals)[outcome_block],
    )


def split(x: FloatArray, pr: Problem) -> tuple[FloatArray, FloatArray | None, FloatArray | None]:
    """(μ, t, β) views of a parameter vector (σ² = t²)."""
    n = pr.n_outcomes
    s = x[n : 2 * n] if pr.hetero else None
    beta = x[pr.n_params - pr.n_blocks :] if pr.position else None
    return x[:n], s, beta


CHUNK = 1 << 15
"""Terms per chunk of the per-term kernels: a chunk's temporaries stay in cache, which makes
the elementwise work 2–3× faster than whole-array numpy passes on millions of terms."""

PARALLEL_MIN = 1 << 20
"""Terms from which :func:`for_chunks` spreads the chunks over the cores (below, threads cost
more than they save)."""

_POOL: ThreadPoolExecutor | None = None


def _workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def for_chunks(m: int, fn: Callable[[int, int], None]) -> None:
    """Call ``fn(lo, hi)`` on consecutive chunks of ``range(m)``, on every core for large m.

    The chunks write disjoint slices and numpy's gathers and ufuncs release the GIL, so threads
    run them in parallel (10M terms on 2 cores: the per-term passes 1.6–1.9× faster). The scatter-
    adds that follow (np.bincount) stay on one thread.
    """
    global _POOL
    bounds = [(lo, min(lo + CHUNK, m)) for lo in range(0, m, CHUNK)]
    workers = _workers()
    if m < PARALLEL_MIN or workers < 2:
        for lo, hi in bounds:
            fn(lo, hi)
        return
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fit-chunks")
    for future in [_POOL.submit(fn, lo, hi) for lo, hi in bounds]:
        future.result()


def _kernel(
    pr: Problem, d: FloatArray, v: FloatArray | None, p: FloatArray, curv: bool
) -> dict[str, FloatArray]:
    """Per-term ℓ and its derivatives in d and v for one chunk (see :mod:`fit._hessian`)."""
    if pr.link == "logit":
        q = expit(d)
        out = {"loss": np.logaddexp(0.0, d) - p * d, "gd": q - p}
        if curv:
            out["hdd"] = q * (1.0 - q)
        return out
    if v is None:
        v = np.full_like(d, 2.0 + pr.eps)
    r = 1.0 / np.sqrt(v)
    z = d * r
    lp, lq = log_ndtr(z), log_ndtr(-z)
    logphi = -0.5 * z * z - _HALF_LOG_2PI
    lam_p = np.exp(logphi - lp)
    lam_q = np.exp(logphi - lq)
    gz = (1.0 - p) * lam_q - p * lam_p  # dℓ/dz
    out = {"loss": -(p * lp + (1.0 - p) * lq), "gd": gz * r, "gv": -0.5 * gz * z / v}
    if curv:
        hzz = p * lam_p * (z + lam_p) + (1.0 - p) * lam_q * (lam_q - z)
        out["hdd"] = hzz / v
        if pr.hetero:
            out["hdv"] = -0.5 * (hzz * z + gz) * r / v
            out["hvv"] = 0.25 * z * (hzz * z + 3.0 * gz) / (v * v)
    return out


def per_term(x: FloatArray, pr: Problem, curv: bool = False) -> dict[str, FloatArray]:
    """Per-term wₖ·ℓ, wₖ·dℓ/dd (``gd``), wₖ·dℓ/dv (``gv``, probit) and, with ``curv``, the
    weighted second derivatives ``hdd``, ``hdv``, ``hvv`` (v ones heteroscedastic only); computed
    in chunks, the weights wₖ of :class:`Problem` applied."""
    mu, s, beta = split(x, pr)
    sig2 = s * s if s is not None else None
    m = len(pr.a)
    probit = pr.link == "probit"
    keys = ["loss", "gd"] + (["gv"] if probit else [])
    if curv:
        keys += ["hdd"] + (["hdv", "hvv"] if probit and pr.hetero else [])
    out = {k: np.empty(m) for k in keys}

    def chunk(lo: int, hi: int) -> None:
        a, b = pr.a[lo:hi], pr.b[lo:hi]
        d = mu[a] - mu[b]
        if beta is not None:
            d += beta[pr.term_block[lo:hi]]
        v = sig2[a] + sig2[b] + pr.eps if sig2 is not None else None
        w = pr.w[lo:hi]
        for k, val in _kernel(pr, d, v, pr.p[lo:hi], curv).items():
            np.multiply(val, w, out=out[k][lo:hi])

    for_chunks(m, chunk)
    return out


def terms(x: FloatArray, pr: Problem) -> dict[str, FloatArray]:
    """Per-term quantities, weighted: wₖℓₖ, wₖ dℓ/dd (``gd``) and, probit, wₖ dℓ/dv (``gv``)."""
    return per_term(x, pr, curv=False)


def value_grad(x: FloatArray, pr: Problem) -> tuple[float, FloatArray]:
    """Objective f(x) and its gradient (module docstring)."""
    return assemble_grad(x, pr, terms(x, pr))


def assemble_grad(x: FloatArray, pr: Problem, t: dict[str, FloatArray]) -> tuple[float, FloatArray]:
    """f and ∇f from the weighted per-term quantities ``t`` of :func:`per_term` at x."""
    n = pr.n_outcomes
    mu, s, _ = split(x, pr)
    f = float(t["loss"].sum())
    grad = np.zeros_like(x)
    gd = t["gd"]
    grad[:n] = np.bincount(pr.a, gd, n) - np.bincount(pr.b, gd, n)
    mean_mu = np.bincount(pr.outcome_block, mu) / pr.sizes
    f += float(pr.sizes @ mean_mu**2)
    grad[:n] += 2.0 * mean_mu[pr.outcome_block]
    if s is not None:
        gv = t["gv"]
        grad[n : 2 * n] = 2.0 * s * (np.bincount(pr.a, gv, n) + np.bincount(pr.b, gv, n))
        excess = np.bincount(pr.outcome_block, s * s) / pr.sizes - 1.0
        f += float(pr.sizes @ excess**2)
        grad[n : 2 * n] += 4.0 * excess[pr.outcome_block] * s
    if pr.position:
        grad[pr.n_params - pr.n_blocks :] = np.bincount(pr.term_block, gd, pr.n_blocks)
    if pr.l2 > 0:
        c = pr.l2 * pr.prior_scale
        f += 0.5 * float(c @ (mu * mu))
        grad[:n] += c * mu
    if s is not None and pr.var_prior > 0:
        log_var = np.log(np.maximum(s * s, 1e-300))
        dev = log_var - (np.bincount(pr.outcome_block, log_var) / pr.sizes)[pr.outcome_block]
        c = pr.var_prior * pr.prior_scale
        f += 0.5 * float(c @ (dev * dev))
        grad[n : 2 * n] += c * dev * 2.0 / s  # Σ dev = 0 per block, so the mean drops out
    return f, grad


def block_loss(x: FloatArray, pr: Problem) -> FloatArray:
    """Weighted mean binary cross-entropy per block, shape (B,)."""
    loss = np.bincount(pr.term_block, terms(x, pr)["loss"], pr.n_blocks)
    return loss / pr.sizes


@dataclass(frozen=True)
class Solution:
    """Raw optimiser output."""

    x: FloatArray
    iterations: int
    converged: bool
    message: str
    seconds: float


def _one_blas_thread() -> AbstractContextManager[object]:
    """Limit BLAS to one thread while L-BFGS-B runs, where threadpoolctl is installed.

    scipy's L-BFGS-B makes many tiny BLAS/LAPACK calls per iteration; with a threaded OpenBLAS
    on a busy 2-core machine each call can wait milliseconds for worker threads (measured: a
    60-parameter fit 50× slower). Without threadpoolctl, set OPENBLAS_NUM_THREADS=1 instead.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return nullcontext()
    return threadpool_limits(1, user_api="blas")  # type: ignore[no-any-return]


def lbfgs(
    pr: Problem, x0: FloatArray, *, max_iter: int, gtol: float, ftol: float, history: int = 20
) -> Solution:
    """Minimise f with scipy's L-BFGS-B (no bounds); converged = scipy's success flag."""
    t0 = time.perf_counter()
    with _one_blas_thread():
        res = _minimize(pr, x0, max_iter, gtol, ftol, history)
    return Solution(
        np.asarray(res.x, dtype=np.float64),
        int(res.nit),
        bool(res.success),
        str(res.message),
        time.perf_counter() - t0,
    )


def _minimize(
    pr: Problem, x0: FloatArray, max_iter: int, gtol: float, ftol: float, history: int
) -> OptimizeResult:
    return minimize(
        value_grad,
        x0,
        args=(pr,),
        jac=True,
        method="L-BFGS-B",
        options={
            "maxiter": max_iter,
            "maxfun": 4 * max_iter,
            "gtol": gtol,
            "ftol": ftol,
            "maxcor": history,
        },
    )
