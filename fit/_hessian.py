"""Second derivatives of the objective of :mod:`fit._core`: per-term curvature, the dense
Hessian (small problems), Hessian–vector products (large ones) and per-cluster scores.

A term k touches at most five parameters θ = (μ_a, μ_b, t_a, t_b, β_block). Its loss depends on
them through d = μ_a − μ_b + β and v = t_a² + t_b² + ε, so with c = ∂d/∂θ = (1, −1, 0, 0, 1) and
e = ∂v/∂θ = (0, 0, 2t_a, 2t_b, 0):

    ∇ℓ  = ℓ_d c + ℓ_v e
    ∇²ℓ = ℓ_dd c cᵀ + ℓ_dv (c eᵀ + e cᵀ) + ℓ_vv e eᵀ + ℓ_v · diag(0, 0, 2, 2, 0)

For the probit link ℓ(z) = −p log Φ(z) − (1 − p) log Φ(−z) with z = d / √v; with the inverse
Mills ratios λ₊ = φ(z)/Φ(z), λ₋ = φ(z)/Φ(−z):

    ℓ_z  = (1 − p) λ₋ − p λ₊,        ℓ_zz = p λ₊ (z + λ₊) + (1 − p) λ₋ (λ₋ − z)
    ℓ_dd = ℓ_zz / v,   ℓ_dv = −(ℓ_zz z + ℓ_z) / (2 v^{3/2}),   ℓ_vv = z (ℓ_zz z + 3 ℓ_z) / (4 v²)

For the logit link ℓ_dd = s (1 − s) with s = sigmoid(d). The gauge and prior terms of
:mod:`fit._core` add a diagonal and, per block, rank-one pieces (``prior_terms``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.sparse import coo_matrix

from fit._core import Problem, assemble_grad, for_chunks, per_term, split

FloatArray = npt.NDArray[np.float64]
_HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)


@dataclass(frozen=True)
class Curvature:
    """Per-term first and second derivatives of wₖ ℓₖ in d and v (weights included)."""

    gd: FloatArray
    gv: FloatArray | None
    hdd: FloatArray
    hdv: FloatArray | None
    hvv: FloatArray | None


def _weighted(pr: Problem, t: dict[str, FloatArray]) -> Curvature:
    """The curvature fields of :func:`fit._core.per_term` output (already weighted)."""
    hetero = pr.link == "probit" and pr.hetero
    return Curvature(
        t["gd"],
        t["gv"] if hetero else None,
        t["hdd"],
        t["hdv"] if hetero else None,
        t["hvv"] if hetero else None,
    )


def curvature(x: FloatArray, pr: Problem) -> Curvature:
    """wₖ·(ℓ_d, ℓ_v, ℓ_dd, ℓ_dv, ℓ_vv) per term (module docstring); v parts None if homoscedastic."""
    return _weighted(pr, per_term(x, pr, curv=True))


def value_grad_curv(x: FloatArray, pr: Problem) -> tuple[float, FloatArray, Curvature]:
    """f, ∇f and the per-term curvature at x from one pass over the terms."""
    t = per_term(x, pr, curv=True)
    f, g = assemble_grad(x, pr, t)
    return f, g, _weighted(pr, t)


def _local(x: FloatArray, pr: Problem) -> tuple[list[npt.NDArray[np.int64]], list, list, list]:
    """Per local slot: parameter index, c and e coefficients (arrays or scalars), diag(∇²v)."""
    n = pr.n_outcomes
    _, t, _ = split(x, pr)
    idx = [pr.a, pr.b]
    c: list = [1.0, -1.0]
    e: list = [0.0, 0.0]
    dv: list = [0.0, 0.0]
    if t is not None:
        idx += [n + pr.a, n + pr.b]
        c += [0.0, 0.0]
        e += [2.0 * t[pr.a], 2.0 * t[pr.b]]
        dv += [2.0, 2.0]
    if pr.position:
        idx.append(pr.n_params - pr.n_blocks + pr.term_block)
        c.append(1.0)
        e.append(0.0)
        dv.append(0.0)
    return idx, c, e, dv


def scores(x: FloatArray, pr: Problem, cv: Curvature) -> tuple[list, list]:
    """Per-term gradient contributions wₖ∇ℓₖ: (parameter index, value) per local slot."""
    idx, c, e, _ = _local(x, pr)
    vals = []
    for ci, ei in zip(c, e, strict=True):
        val = cv.gd * ci
        if cv.gv is not None:
            val = val + cv.gv * ei
        vals.append(val)
    return idx, vals


def cluster_scores(x: FloatArray, pr: Problem, cv: Curvature, clusters: npt.NDArray[np.int64]):
    """Sparse (clusters × parameters) matrix of score sums per cluster (CSR)."""
    idx, vals = scores(x, pr, cv)
    n_clusters = int(clusters.max()) + 1 if len(clusters) else 0
    rows = np.tile(clusters, len(idx))
    cols = np.concatenate(idx)
    return coo_matrix((np.concatenate(vals), (rows, cols)), shape=(n_clusters, pr.n_params)).tocsr()


def _prior_diag_and_lowrank(x: FloatArray, pr: Problem) -> tuple[FloatArray, list]:
    """Gauge and prior Hessian: a diagonal and rank-one pieces (coef, vector over params)."""
    n = pr.n_outcomes
    mu, t, _ = split(x, pr)
    diag = np.zeros(pr.n_params)
    lowrank: list[tuple[float, FloatArray]] = []
    for k in range(pr.n_blocks):  # per model, not per pair
        lo, hi = int(pr.offsets[k]), int(pr.offsets[k + 1])
        size = float(pr.sizes[k])
        ones = np.zeros(pr.n_params)
        ones[lo:hi] = 1.0
        lowrank.append((2.0 / size, ones))  # N_b (mean μ)²
        if t is not None:
            tb = t[lo:hi]
            excess = float(np.mean(tb * tb)) - 1.0
            vec = np.zeros(pr.n_params)
            vec[n + lo : n + hi] = tb
            lowrank.append((8.0 / size, vec))  # N_b (mean t² − 1)²
            diag[n + lo : n + hi] += 4.0 * excess
            if pr.var_prior > 0:
                c = pr.var_prior * float(pr.prior_scale[lo])
                log_var = np.log(np.maximum(tb * tb, 1e-300))
                dev = log_var - log_var.mean()
                diag[n + lo : n + hi] += c * (4.0 - 2.0 * dev) / (tb * tb)
                inv = np.zeros(pr.n_params)
                inv[n + lo : n + hi] = 1.0 / tb
                lowrank.append((-4.0 * c / size, inv))
    if pr.l2 > 0:
        diag[:n] += pr.l2 * pr.prior_scale
    return diag, lowrank


def dense_hessian(x: FloatArray, pr: Problem, cv: Curvature | None = None) -> FloatArray:
    """The full Hessian ∇²f as a dense (P, P) array; for problems of a few thousand params.

    Assembled block by block (μμ, μt, tt, β rows): one scatter-add per block over the terms, so
    the cost is O(terms + P²).
    """
    cv = curvature(x, pr) if cv is None else cv
    n, size = pr.n_outcomes, pr.n_params
    a, b = pr.a, pr.b
    h = np.zeros((size, size))

    def pair_block(v_ab: FloatArray, v_ba: FloatArray, v_aa: FloatArray, v_bb: FloatArray):
        blk = np.bincount(a * n + b, v_ab, n * n) + np.bincount(b * n + a, v_ba, n * n)
        blk = blk.reshape(n, n)
        blk[np.diag_indices(n)] += np.bincount(a, v_aa, n) + np.bincount(b, v_bb, n)
        return blk

    h[:n, :n] = pair_block(-cv.hdd, -cv.hdd, cv.hdd, cv.hdd)
    _, t, _ = split(x, pr)
    if t is not None and cv.hdv is not None and cv.hvv is not None and cv.gv is not None:
        ea, eb = 2.0 * t[a], 2.0 * t[b]
        # rows μ, columns t: c_a = 1, c_b = −1
        mt = pair_block(cv.hdv * eb, -cv.hdv * ea, cv.hdv * ea, -cv.hdv * eb)
        h[:n, n : 2 * n] = mt
        h[n : 2 * n, :n] = mt.T
        cross = cv.hvv * ea * eb
        h[n : 2 * n, n : 2 * n] = pair_block(
            cross, cross, cv.hvv * ea * ea + 2.0 * cv.gv, cv.hvv * eb * eb + 2.0 * cv.gv
        )
    if pr.position:
        nb = pr.n_blocks
        tb = pr.term_block
        rows = np.zeros((nb, size))
        rows[:, :n] = (
            np.bincount(tb * n + a, cv.hdd, nb * n) - np.bincount(tb * n + b, cv.hdd, nb * n)
        ).reshape(nb, n)
        if t is not None and cv.hdv is not None:
            ea, eb = 2.0 * t[a], 2.0 * t[b]
            rows[:, n : 2 * n] = (
                np.bincount(tb * n + a, cv.hdv * ea, nb * n)
                + np.bincount(tb * n + b, cv.hdv * eb, nb * n)
            ).reshape(nb, n)
        rows[np.arange(nb), size - nb + np.arange(nb)] = np.bincount(tb, cv.hdd, nb)
        h[size - nb :, :] = rows
        h[:, size - nb :] = rows.T
    diag, lowrank = _prior_diag_and_lowrank(x, pr)
    h[np.diag_indices(size)] += diag
    for coef, vec in lowrank:
        nz = np.flatnonzero(vec)
        h[np.ix_(nz, nz)] += coef * np.outer(vec[nz], vec[nz])
    return h


def _bc(idx: npt.NDArray[np.int64], weights: FloatArray, size: int) -> FloatArray:
    """np.bincount with weights, typed as float64."""
    return np.asarray(np.bincount(idx, weights, size), dtype=np.float64)


def _nz(coef: float | FloatArray) -> bool:
    """Whether a slot coefficient can be non-zero (an array, or a non-zero scalar)."""
    return bool(np.ndim(coef)) or bool(coef != 0.0)


class HessianOperator:
    """Matrix-free ∇²f·v at a fixed x, O(terms) per product; and its diagonal."""

    def __init__(self, x: FloatArray, pr: Problem, cv: Curvature | None = None) -> None:
        self.pr = pr
        self.cv = curvature(x, pr) if cv is None else cv
        self.pdiag, self.lowrank = _prior_diag_and_lowrank(x, pr)
        self.t = split(x, pr)[1]

    def matvec(self, v: FloatArray) -> FloatArray:
        """∇²f·v: per-term products in cache-sized chunks, then one scatter-add per slot."""
        pr, cv = self.pr, self.cv
        n, m = pr.n_outcomes, len(pr.a)
        vm = v[:n]
        hetero = cv.hdv is not None and cv.hvv is not None and cv.gv is not None
        vt = v[n : 2 * n] if hetero else None
        vb = v[pr.n_params - pr.n_blocks :] if pr.position else None
        alpha = np.empty(m)
        ga = np.empty(m) if hetero else alpha
        gb = np.empty(m) if hetero else alpha

        def chunk(lo: int, hi: int) -> None:
            a, b = pr.a[lo:hi], pr.b[lo:hi]
            u = vm[a] - vm[b]
            if vb is not None:
                u += vb[pr.term_block[lo:hi]]
            if vt is None or self.t is None:
                alpha[lo:hi] = cv.hdd[lo:hi] * u
                return
            assert cv.hdv is not None and cv.hvv is not None and cv.gv is not None
            ea, eb = 2.0 * self.t[a], 2.0 * self.t[b]
            vta, vtb = vt[a], vt[b]
            w = ea * vta + eb * vtb
            hdv = cv.hdv[lo:hi]
            alpha[lo:hi] = cv.hdd[lo:hi] * u + hdv * w
            gamma = hdv * u + cv.hvv[lo:hi] * w
            gv2 = 2.0 * cv.gv[lo:hi]
            ga[lo:hi] = ea * gamma + gv2 * vta
            gb[lo:hi] = eb * gamma + gv2 * vtb

        for_chunks(m, chunk)
        out = self.pdiag * v
        out[:n] += np.bincount(pr.a, alpha, n) - np.bincount(pr.b, alpha, n)
        if hetero:
            out[n : 2 * n] += np.bincount(pr.a, ga, n) + np.bincount(pr.b, gb, n)
        if pr.position:
            out[pr.n_params - pr.n_blocks :] += np.bincount(pr.term_block, alpha, pr.n_blocks)
        for coef, vec in self.lowrank:
            out += coef * float(vec @ v) * vec
        return out

    def block_diagonal(self) -> tuple[FloatArray, FloatArray | None, FloatArray | None]:
        """Per outcome the 2×2 block (μμ, μt, tt) of ∇²f (t parts None if homoscedastic);
        the β entries are appended to μμ for position problems."""
        pr, cv = self.pr, self.cv
        n = pr.n_outcomes
        mm: FloatArray = _bc(pr.a, cv.hdd, n) + _bc(pr.b, cv.hdd, n)
        diag_mu = self.pdiag[:n].copy()
        for coef, vec in self.lowrank:
            diag_mu += coef * vec[:n] ** 2
        mm = mm + diag_mu
        mt: FloatArray | None = None
        tt: FloatArray | None = None
        if cv.hdv is not None and cv.hvv is not None and cv.gv is not None:
            # e = 2t at the term's outcome, constant within each bincount bin: factor it out
            t = self.t
            assert t is not None
            mt = 2.0 * t * (_bc(pr.a, cv.hdv, n) - _bc(pr.b, cv.hdv, n))
            tdiag = self.pdiag[n : 2 * n].copy()
            for coef, vec in self.lowrank:
                tdiag += coef * vec[n : 2 * n] ** 2
            tt = (
                4.0 * t * t * (_bc(pr.a, cv.hvv, n) + _bc(pr.b, cv.hvv, n))
                + 2.0 * (_bc(pr.a, cv.gv, n) + _bc(pr.b, cv.gv, n))
                + tdiag
            )
        if pr.position:
            bb = _bc(pr.term_block, cv.hdd, pr.n_blocks) + self.pdiag[-pr.n_blocks :]
            mm = np.concatenate([mm, bb])
        return mm, mt, tt
