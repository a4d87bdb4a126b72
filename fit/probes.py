"""Linear probes: how well a model's hidden states predict its own utilities and preferences.

Two probes per layer, both cross-validated over *outcomes* (K folds; a fold's outcomes are
never seen in training, so a probe is scored on representations it has not fitted):

- **ridge to μ**: ``μ̂ = (h − m) / s · w + b`` with an L2 penalty α chosen inside each training
  fold by exact leave-one-out over the training outcomes (one SVD per fold covers the whole α
  grid). Scored by held-out R² per fold, ``1 − Σ(μ − μ̂)² / Σ(μ − mean μ)²`` over the fold's
  outcomes, and by the R² and Pearson r of the pooled out-of-fold predictions.
- **logistic on differences**: ``P(a ≻ b) = σ((z_a − z_b) · w)`` on standardised vectors ``z``,
  trained on the binary preference ``P(a ≻ b) > ½`` of pairs whose two outcomes are both in the
  training fold, tested on pairs whose two outcomes are both in the held-out fold (pairs with
  one seen outcome are scored apart: see :class:`PairProbe`). No intercept:
  the features are antisymmetric in (a, b), so an intercept would be a position effect, which
  the folded probabilities do not have. The L2 penalty λ is chosen by an inner 3-fold split of
  the training outcomes (log-loss on inner pairs with both outcomes held out).

Features are standardised with the mean and sd of the training fold's outcomes only. Both
probes are solved in the span of the training outcomes' vectors (exact for L2-penalised linear
models: the optimal weights lie in that span), so their cost grows with the number of outcomes,
not with the hidden size.

Why this module is not in ``fit/analyses/``: the analyses there are the paper's experiments, each
a statistic of fitted utilities (or pair probabilities) run by ``valuescope analyze``; probes
take a second kind of input, the model's hidden-state vectors, have their own command
(``valuescope probe``, ``cluster/control/probe.py``) and cache, and are not part of ``analyze
all``. They share the analyses' figure helpers only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fit._core import _one_blas_thread
from fit.analyses._common import (
    AnalysisInputError,
    BoolArray,
    FloatArray,
    IntArray,
    as_float,
    new_figure,
    pearson,
    save_figure,
)

#: Ridge penalties, as multiples of the mean squared singular value of the training features.
RIDGE_GRID = tuple(float(a) for a in np.logspace(-4, 3, 15))
#: Logistic penalties λ on the mean log-loss (features standardised).
LOGISTIC_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
#: Inner folds used to choose λ of the logistic probe.
INNER_FOLDS = 3


@dataclass(frozen=True)
class RidgeProbe:
    """Cross-validated ridge regression of μ on hidden states."""

    r2_folds: FloatArray
    """Held-out R² of each fold (over that fold's outcomes); NaN for a fold with < 2 outcomes
    or constant μ. Shape (K,)."""
    r2_pooled: float
    """R² of the out-of-fold predictions of all outcomes together."""
    pearson: float
    """Pearson r of the out-of-fold predictions with μ."""
    alphas: FloatArray
    """Penalty chosen in each fold (absolute, on standardised features). Shape (K,)."""
    predicted: FloatArray
    """Out-of-fold prediction of each outcome's μ. Shape (N,)."""

    @property
    def r2_mean(self) -> float:
        """Mean held-out R² over the folds (NaN folds ignored)."""
        return _nanmean(self.r2_folds)

    @property
    def r2_sd(self) -> float:
        """Sample sd of the per-fold held-out R² (NaN with fewer than two folds)."""
        return _nansd(self.r2_folds)


@dataclass(frozen=True)
class PairProbe:
    """Cross-validated logistic regression of pairwise preferences on vector differences.

    The headline test set of a fold is the pairs whose *two* outcomes are held out: the probe
    has seen neither vector. Pairs with one held-out and one training outcome are scored
    separately (``accuracy_one_seen``): there the probe can score the seen outcome from what
    it memorised about it, so that accuracy is above ½ even for vectors unrelated to the
    outcomes (vectors shuffled between outcomes).
    """

    accuracy_folds: FloatArray
    """Accuracy on each fold's pairs with both outcomes held out (NaN when a fold has none).
    Shape (K,)."""
    accuracy: float
    """Accuracy over all pairs with both outcomes held out (each such pair is tested once)."""
    log_loss: float
    """Mean log-loss (natural log) over the same pairs."""
    n_test: int
    """Pairs behind ``accuracy``."""
    accuracy_one_seen: float
    """Accuracy over the (fold, pair) evaluations with exactly one outcome held out."""
    n_test_one_seen: int
    """Evaluations behind ``accuracy_one_seen`` (each such pair is tested in two folds)."""
    lambdas: FloatArray
    """Penalty chosen in each fold that had training pairs."""
    n_pairs: int
    """Pairs with a usable label (P ≠ ½ and finite)."""

    @property
    def accuracy_sd(self) -> float:
        """Sample sd of the per-fold accuracies."""
        return _nansd(self.accuracy_folds)


@dataclass(frozen=True)
class LayerProbe:
    """Both probes of one layer."""

    layer: int
    """Layer index (0 = embeddings, 1…L = transformer blocks)."""
    dim: int
    """Hidden size."""
    n_outcomes: int
    """Outcomes probed (those with a utility)."""
    folds: int
    """Number of outcome folds K."""
    ridge: RidgeProbe
    pairs: PairProbe | None
    """None when no pairs were given."""

    def row(self) -> dict[str, float | int]:
        """A flat record for the results table."""
        pairs = self.pairs
        nan = float("nan")
        return {
            "layer": self.layer,
            "dim": self.dim,
            "n_outcomes": self.n_outcomes,
            "folds": self.folds,
            "r2_mu": self.ridge.r2_mean,
            "r2_mu_sd": self.ridge.r2_sd,
            "r2_mu_pooled": self.ridge.r2_pooled,
            "pearson_mu": self.ridge.pearson,
            "ridge_alpha": float(np.median(self.ridge.alphas)),
            "n_pairs": pairs.n_pairs if pairs else 0,
            "n_test_pairs": pairs.n_test if pairs else 0,
            "pair_accuracy": pairs.accuracy if pairs else nan,
            "pair_accuracy_sd": pairs.accuracy_sd if pairs else nan,
            "pair_log_loss": pairs.log_loss if pairs else nan,
            "n_test_pairs_one_seen": pairs.n_test_one_seen if pairs else 0,
            "pair_accuracy_one_seen": pairs.accuracy_one_seen if pairs else nan,
            "logistic_lambda": float(np.median(pairs.lambdas)) if pairs else nan,
        }


def _nanmean(x: FloatArray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def _nansd(x: FloatArray) -> float:
    x = x[np.isfinite(x)]
    return float(x.std(ddof=1)) if x.size >= 2 else float("nan")


def outcome_folds(n: int, k: int, seed: int = 0) -> IntArray:
    """A random fold (0…k−1) for each of ``n`` outcomes, sizes differing by at most one.

    Raises:
        AnalysisInputError: ``k < 2`` or fewer than two outcomes per fold.
    """
    if k < 2:
        raise AnalysisInputError(f"folds must be at least 2, got {k}")
    if n < 2 * k:
        raise AnalysisInputError(
            f"{n} outcomes are too few for {k} folds (need at least {2 * k}: two per fold); "
            "lower --folds or probe a run with more outcomes"
        )
    order = np.random.default_rng(seed).permutation(n)
    folds = np.empty(n, dtype=np.int64)
    folds[order] = np.arange(n) % k
    return folds


def _standardise(x: FloatArray, train: BoolArray) -> FloatArray:
    """``x`` centred and scaled by the mean and sd of its training rows (sd 0 → 1)."""
    mean = x[train].mean(axis=0)
    sd = x[train].std(axis=0)
    sd[sd < 1e-12] = 1.0
    return (x - mean) / sd


def _span(z: FloatArray, train: BoolArray) -> FloatArray:
    """Coordinates of every row of ``z`` in an orthonormal basis of the training rows' span.

    An L2-penalised linear model fitted on training rows has its weights in that span, so
    fitting in these coordinates is exact and costs O(n_train) per weight, not O(hidden size).
    """
    _, s, vt = np.linalg.svd(z[train], full_matrices=False)
    keep = s > s.max() * 1e-10 if s.size else np.zeros(0, dtype=bool)
    out: FloatArray = z @ vt[keep].T
    return out


def _check(x: FloatArray, n: int, name: str = "hidden") -> None:
    if x.shape[0] != n:
        raise AnalysisInputError(f"{name} has {x.shape[0]} rows but there are {n} outcomes")
    if not np.all(np.isfinite(x)):
        raise AnalysisInputError(f"{name} holds NaN or infinite values")


# --- ridge to μ -------------------------------------------------------------------------------


def ridge_probe(
    hidden: FloatArray, mu: FloatArray, folds: IntArray, grid: tuple[float, ...] = RIDGE_GRID
) -> RidgeProbe:
    """Ridge regression of μ on hidden states, K-fold over outcomes.

    Args:
        hidden: one vector per outcome, shape (N, D).
        mu: the outcomes' utilities, shape (N,).
        folds: fold of each outcome (from :func:`outcome_folds`), shape (N,).
        grid: penalties to try, relative to the mean squared singular value of the standardised
            training features; the one with the lowest leave-one-out error on the training
            outcomes is used.
    """
    x = as_float("hidden", hidden, ndim=2)
    y = as_float("mu", mu)
    _check(x, len(y))
    if not np.all(np.isfinite(y)):
        raise AnalysisInputError("mu holds NaN or infinite values; drop outcomes without a utility")
    k = int(folds.max()) + 1
    predicted = np.full(len(y), np.nan)
    r2 = np.full(k, np.nan)
    alphas = np.full(k, np.nan)
    for f in range(k):
        test = folds == f
        train = ~test
        z = _standardise(x, train)
        u, s, vt = np.linalg.svd(z[train], full_matrices=False)
        y_mean = y[train].mean()
        yc = y[train] - y_mean
        uty = u.T @ yc
        s2 = s**2
        # the grid is relative to the features' spectrum; constant features (e.g. layer 0 of
        # a prompt whose last token is the same for every outcome) predict the training mean
        scale = float(s2.mean()) if s2.size and s2.mean() > 0 else 1.0
        best = (np.inf, grid[0] * scale)
        for rel in grid:
            alpha = rel * scale
            shrink = s2 / (s2 + alpha)
            fitted = u @ (shrink * uty)
            # the intercept (the training mean) adds 1/n to every leverage
            hat = 1.0 / len(yc) + (u**2) @ shrink
            # leave-one-out residuals of a linear smoother: e_i / (1 − H_ii)
            loo = (yc - fitted) / np.maximum(1.0 - hat, 1e-12)
            err = float(np.mean(loo**2))
            if err < best[0]:
                best = (err, alpha)
        alpha = best[1]
        w = vt.T @ (s / (s2 + alpha) * uty)
        predicted[test] = z[test] @ w + y_mean
        alphas[f] = alpha
        yt = y[test]
        sst = float(np.sum((yt - yt.mean()) ** 2))
        if len(yt) >= 2 and sst > 0:
            r2[f] = 1.0 - float(np.sum((yt - predicted[test]) ** 2)) / sst
    sst_all = float(np.sum((y - y.mean()) ** 2))
    pooled = 1.0 - float(np.sum((y - predicted) ** 2)) / sst_all if sst_all > 0 else float("nan")
    return RidgeProbe(r2, pooled, pearson(predicted, y), alphas, predicted)


# --- logistic on differences ------------------------------------------------------------------


def _logistic_fit(d: FloatArray, y: FloatArray, lam: float, w0: FloatArray | None) -> FloatArray:
    """Weights minimising mean log-loss of σ(d·w) against labels y, plus (λ/2)·‖w‖²."""
    from scipy.optimize import minimize

    n = max(len(y), 1)
    if d.shape[1] == 0:  # no variation in the training outcomes: no preference to learn
        return np.zeros(0)

    def objective(w: FloatArray) -> tuple[float, FloatArray]:
        z = d @ w
        # log(1 + e^z) − y·z, stable for large |z|
        loss = float(np.sum(np.logaddexp(0.0, z) - y * z)) / n + 0.5 * lam * float(w @ w)
        grad = d.T @ (_sigmoid(z) - y) / n + lam * w
        return loss, grad

    start = np.zeros(d.shape[1]) if w0 is None else w0
    res = minimize(objective, start, jac=True, method="L-BFGS-B", options={"maxiter": 500})
    out: FloatArray = res.x
    return out


def _sigmoid(z: FloatArray) -> FloatArray:
    out: FloatArray = np.exp(-np.logaddexp(0.0, -z))
    return out


def _log_loss(z: FloatArray, y: FloatArray) -> float:
    return float(np.mean(np.logaddexp(0.0, z) - y * z)) if len(y) else float("nan")


def _correct(z: FloatArray, y: FloatArray) -> FloatArray:
    """1 for a right side, 0 for a wrong one, ½ for no preference (z = 0)."""
    out: FloatArray = np.where(z == 0, 0.5, ((z > 0) == (y > 0.5)).astype(np.float64))
    return out


def _choose_lambda(
    z: FloatArray,
    a: IntArray,
    b: IntArray,
    y: FloatArray,
    train: BoolArray,
    seed: int,
    grid: tuple[float, ...],
) -> float:
    """λ with the lowest held-out log-loss over an inner split of the training outcomes."""
    idx = np.flatnonzero(train)
    if len(idx) < 2 * INNER_FOLDS:
        return grid[len(grid) // 2]
    inner = np.full(len(train), -1, dtype=np.int64)
    inner[idx] = outcome_folds(len(idx), INNER_FOLDS, seed)
    losses = np.zeros(len(grid))
    validated = False
    for f in range(INNER_FOLDS):
        held = inner == f
        fit_rows = train & ~held
        tr = fit_rows[a] & fit_rows[b]
        te = held[a] & held[b]  # both outcomes unseen, like the outer test pairs
        if not tr.any() or not te.any():
            continue
        validated = True
        zz = _span(z, fit_rows)
        d = zz[a] - zz[b]
        w = None
        for g in np.argsort(grid)[::-1]:  # strong to weak penalty, each warm-started
            w = _logistic_fit(d[tr], y[tr], grid[g], w)
            losses[g] += _log_loss(d[te] @ w, y[te]) * int(te.sum())
    if not validated:
        return grid[len(grid) // 2]
    return grid[int(np.argmin(losses))]


def pair_probe(
    hidden: FloatArray,
    first: IntArray,
    second: IntArray,
    p: FloatArray,
    folds: IntArray,
    seed: int = 0,
    grid: tuple[float, ...] = LOGISTIC_GRID,
) -> PairProbe:
    """Logistic regression of the binary preference on hidden-state differences.

    Args:
        hidden: one vector per outcome, shape (N, D).
        first, second: outcome indices of each pair, shape (M,).
        p: P(first ≻ second) per pair (both orientations folded), shape (M,); pairs with
            P = ½ exactly or NaN carry no preference and are left out.
        folds: fold of each outcome, shape (N,).
        seed: seed of the inner split that chooses λ.
        grid: penalties λ to choose from.
    """
    x = as_float("hidden", hidden, ndim=2)
    _check(x, len(folds))
    a = np.asarray(first, dtype=np.int64)
    b = np.asarray(second, dtype=np.int64)
    prob = as_float("p", p)
    if not (len(a) == len(b) == len(prob)):
        raise AnalysisInputError(
            f"first, second and p must have one entry per pair; got {len(a)}, {len(b)}, {len(prob)}"
        )
    n = x.shape[0]
    if len(a) and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n):
        raise AnalysisInputError(f"pair indices must lie in 0…{n - 1}")
    usable = np.isfinite(prob) & (prob != 0.5) & (a != b)
    a, b, prob = a[usable], b[usable], prob[usable]
    y = (prob > 0.5).astype(np.float64)
    k = int(folds.max()) + 1
    acc = np.full(k, np.nan)
    lambdas = np.full(k, np.nan)
    both: list[FloatArray] = []
    one: list[FloatArray] = []
    loss_sum = 0.0
    for f in range(k):
        held = folds == f
        train = ~held
        tr = train[a] & train[b]
        te_both = held[a] & held[b]
        te_one = held[a] ^ held[b]
        if not tr.any() or not (te_both.any() or te_one.any()):
            continue
        z = _standardise(x, train)
        lam = _choose_lambda(z, a, b, y, train, seed + f, grid)
        zz = _span(z, train)
        d = zz[a] - zz[b]
        w = _logistic_fit(d[tr], y[tr], lam, None)
        lambdas[f] = lam
        if te_both.any():
            margin = d[te_both] @ w
            c = _correct(margin, y[te_both])
            acc[f] = float(c.mean())
            both.append(c)
            loss_sum += _log_loss(margin, y[te_both]) * len(c)
        if te_one.any():
            one.append(_correct(d[te_one] @ w, y[te_one]))
    n_both = int(sum(len(c) for c in both))
    n_one = int(sum(len(c) for c in one))
    return PairProbe(
        accuracy_folds=acc,
        accuracy=float(np.concatenate(both).mean()) if n_both else float("nan"),
        log_loss=loss_sum / n_both if n_both else float("nan"),
        n_test=n_both,
        accuracy_one_seen=float(np.concatenate(one).mean()) if n_one else float("nan"),
        n_test_one_seen=n_one,
        lambdas=lambdas[np.isfinite(lambdas)] if np.isfinite(lambdas).any() else np.full(1, np.nan),
        n_pairs=len(y),
    )


def probe_layer(
    layer: int,
    hidden: FloatArray,
    mu: FloatArray,
    *,
    first: IntArray | None = None,
    second: IntArray | None = None,
    p: FloatArray | None = None,
    folds: int = 5,
    seed: int = 0,
) -> LayerProbe:
    """Both probes on one layer's vectors, with one outcome split shared by the two.

    Args:
        layer: layer index, recorded in the result.
        hidden: one vector per outcome, shape (N, D).
        mu: utilities, shape (N,).
        first, second, p: the pairs and their P(first ≻ second) (optional).
        folds: K of the K-fold split over outcomes.
        seed: seed of the split (the same seed gives the same split on every layer).
    """
    x = as_float("hidden", hidden, ndim=2)
    split = outcome_folds(x.shape[0], folds, seed)
    # Many small BLAS calls (SVDs of fold-sized matrices, L-BFGS steps): one thread is
    # much faster than a threaded BLAS on a busy machine (see fit._core).
    with _one_blas_thread():
        ridge = ridge_probe(x, mu, split)
        pairs = None
        if first is not None and second is not None and p is not None and len(p):
            pairs = pair_probe(x, first, second, p, split, seed)
    return LayerProbe(layer, x.shape[1], x.shape[0], folds, ridge, pairs)


def utility_pair_accuracy(
    mu: FloatArray, first: IntArray, second: IntArray, p: FloatArray
) -> float:
    """Share of pairs whose preference (P ≠ ½) the utilities themselves order the same way.

    An in-sample reference for the pair probe: the fit saw these pairs, the probe's test
    pairs did not.
    """
    m = as_float("mu", mu)
    prob = as_float("p", p)
    a = np.asarray(first, dtype=np.int64)
    b = np.asarray(second, dtype=np.int64)
    usable = np.isfinite(prob) & (prob != 0.5)
    if not usable.any():
        return float("nan")
    diff = m[a[usable]] - m[b[usable]]
    return float(_correct(diff, (prob[usable] > 0.5).astype(np.float64)).mean())


def plot_probes(
    layers: list[LayerProbe],
    path: str | Path,
    title: str = "",
    reference: float | None = None,
) -> Path:
    """Held-out R² of μ and pairwise accuracy against layer, ±1 sd across folds.

    ``reference`` (optional) is drawn as a line on the accuracy panel, e.g. the in-sample
    accuracy of the fitted utilities (:func:`utility_pair_accuracy`).
    """
    fig = new_figure(9.0, 3.6)
    xs = np.array([lp.layer for lp in layers], dtype=np.float64)
    r2 = np.array([lp.ridge.r2_mean for lp in layers])
    r2_sd = np.array([lp.ridge.r2_sd for lp in layers])
    ax = fig.add_subplot(1, 2, 1)
    ax.errorbar(
        xs, r2, yerr=np.nan_to_num(r2_sd), marker="o", capsize=3, color="#4c72b0",
        label="mean over folds ± sd",
    )  # fmt: skip
    pooled = [lp.ridge.r2_pooled for lp in layers]
    ax.plot(xs, pooled, "s--", color="#55a868", label="pooled out-of-fold")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel("held-out R² of μ")
    ax.set_title("ridge probe → μ")
    ax.legend(fontsize=8)
    ax2 = fig.add_subplot(1, 2, 2)
    with_pairs = [lp for lp in layers if lp.pairs is not None]
    if with_pairs:
        px = np.array([lp.layer for lp in with_pairs], dtype=np.float64)
        acc = np.array([lp.pairs.accuracy for lp in with_pairs if lp.pairs is not None])
        sd = np.array([lp.pairs.accuracy_sd for lp in with_pairs if lp.pairs is not None])
        ax2.errorbar(px, acc, yerr=np.nan_to_num(sd), marker="o", capsize=3, color="#c44e52")
    if reference is not None and np.isfinite(reference):
        ax2.axhline(reference, color="#8172b2", ls="--", lw=1, label="fitted μ (in-sample)")
        ax2.legend(fontsize=8, loc="lower right")
    ax2.axhline(0.5, color="grey", lw=0.8)
    ax2.set_ylim(0.0, 1.0)
    ax2.set_xlabel("layer (0 = embeddings)")
    ax2.set_ylabel("pair accuracy, both outcomes held out")
    ax2.set_title("logistic probe on h_a − h_b → preference")
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
