"""Linear probes on synthetic hidden states whose answer is known.

Vectors are built like a model's: a few latent factors mixed into many dimensions plus
isotropic noise. When μ is a linear function of the factors the probes must find it; when μ
and the preferences are independent of the vectors they must not.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from fit.analyses._common import AnalysisInputError
from fit.probes import (
    outcome_folds,
    pair_probe,
    plot_probes,
    probe_layer,
    ridge_probe,
)

N, D, FACTORS = 80, 300, 4


def vectors(seed: int = 0, noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Hidden states (N, D) and the latent factors (N, FACTORS) they are made of."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(N, FACTORS))
    mixing = rng.normal(size=(FACTORS, D))
    return factors @ mixing + noise * rng.normal(size=(N, D)), factors


def pairs(m: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    i, j = np.triu_indices(N, k=1)
    pick = rng.choice(len(i), size=m, replace=False)
    return i[pick], j[pick]


def test_folds_are_balanced_and_seeded():
    folds = outcome_folds(23, 5, seed=3)
    assert sorted(np.bincount(folds).tolist()) == [4, 4, 5, 5, 5]
    assert np.array_equal(folds, outcome_folds(23, 5, seed=3))
    assert not np.array_equal(folds, outcome_folds(23, 5, seed=4))
    with pytest.raises(AnalysisInputError, match="too few for 5 folds"):
        outcome_folds(9, 5)
    with pytest.raises(AnalysisInputError, match="at least 2"):
        outcome_folds(9, 1)


def test_planted_linear_signal_is_recovered():
    x, factors = vectors()
    mu = factors @ np.array([1.0, -0.5, 0.3, 0.0])
    mu_observed = mu + 0.2 * np.random.default_rng(1).normal(size=N)  # R² ceiling ≈ 0.97
    a, b = pairs(400)
    p = norm.cdf(mu[a] - mu[b])
    layer = probe_layer(7, x, mu_observed, first=a, second=b, p=p, folds=5, seed=0)
    row = layer.row()
    assert row["layer"] == 7 and row["dim"] == D and row["n_outcomes"] == N
    assert row["r2_mu"] > 0.85 and row["r2_mu_pooled"] > 0.85 and row["pearson_mu"] > 0.93
    assert row["r2_mu_sd"] < 0.1
    assert row["n_pairs"] == 400
    # a pair is tested once when its outcomes share a fold, else once from each side
    assert row["n_test_pairs"] + row["n_test_pairs_one_seen"] / 2 == 400
    assert 40 <= row["n_test_pairs"] <= 130  # about 1/K of the pairs
    assert row["pair_accuracy"] > 0.9 and row["pair_log_loss"] < 0.3
    assert row["pair_accuracy_one_seen"] > 0.9


def test_pure_noise_gives_no_signal():
    x, _ = vectors(seed=2)
    rng = np.random.default_rng(5)
    a, b = pairs(400, seed=5)
    r2, acc = [], []
    for seed in range(4):
        layer = probe_layer(
            0, x, rng.normal(size=N), first=a, second=b, p=rng.uniform(size=400), seed=seed
        )
        r2.append(layer.ridge.r2_mean)
        acc.append(layer.pairs.accuracy if layer.pairs else np.nan)
        # a probe that learned nothing predicts close to the training mean: R² at or below 0
        assert layer.ridge.r2_pooled < 0.1
    assert np.mean(r2) < 0.05
    # ~80 test pairs per seed: sd of one accuracy ≈ 0.056, of the mean of four ≈ 0.03
    assert abs(np.mean(acc) - 0.5) < 0.08


def test_standardisation_uses_training_outcomes_only():
    """A feature that is constant in fold 0's training outcomes and huge in its test outcomes
    cannot leak into that fold's fit: its predictions equal those made without the feature."""
    x, factors = vectors(seed=3, noise=0.5)
    mu = factors[:, 0]
    folds = outcome_folds(N, 4, seed=0)
    clean = x.copy()
    clean[:, 0] = 0.0
    leaky = x.copy()
    leaky[:, 0] = np.where(folds == 0, 1e6, 0.0)  # varies only inside test fold 0
    expected = ridge_probe(clean, mu, folds)
    got = ridge_probe(leaky, mu, folds)
    held = folds == 0
    np.testing.assert_allclose(got.predicted[held], expected.predicted[held], rtol=1e-8, atol=1e-8)
    assert expected.r2_pooled > 0.8


def test_constant_vectors_predict_the_mean():
    """Layer 0 of a fixed prompt: every outcome has the same last token, so the same vector."""
    x = np.ones((20, 16))
    mu = np.random.default_rng(0).normal(size=20)
    a, b = np.triu_indices(20, k=1)
    p = np.random.default_rng(1).uniform(size=len(a))
    layer = probe_layer(0, x, mu, first=a, second=b, p=p, folds=4)
    assert np.all(np.isfinite(layer.ridge.predicted))
    assert layer.ridge.r2_pooled <= 0.0
    assert layer.pairs is not None and layer.pairs.n_test > 0
    # no preference either way: every test pair counts ½
    assert layer.pairs.accuracy == 0.5 and layer.pairs.accuracy_one_seen == 0.5


def test_indifferent_pairs_are_left_out_and_inputs_checked():
    x, factors = vectors(seed=4)
    folds = outcome_folds(N, 5)
    a, b = pairs(50)
    p = np.full(50, 0.5)
    p[:10] = 0.9
    p[10] = np.nan
    res = pair_probe(x, a, b, p, folds)
    assert res.n_pairs == 10
    with pytest.raises(AnalysisInputError, match="one entry per pair"):
        pair_probe(x, a, b[:-1], p, folds)
    with pytest.raises(AnalysisInputError, match=r"0…79"):
        pair_probe(x, a + 100, b, p, folds)
    with pytest.raises(AnalysisInputError, match="rows but there are"):
        ridge_probe(x[:-1], factors[:, 0], folds)
    with pytest.raises(AnalysisInputError, match="NaN"):
        ridge_probe(x, np.full(N, np.nan), folds)


def test_figure(tmp_path):
    x, factors = vectors(seed=6)
    a, b = pairs(100)
    p = norm.cdf(factors[a, 0] - factors[b, 0])
    layers = [probe_layer(k, x + k, factors[:, 0], first=a, second=b, p=p, folds=4) for k in (0, 5)]
    out = plot_probes(layers, tmp_path / "probes.png", title="synthetic")
    assert out.read_bytes().startswith(b"\x89PNG") and out.stat().st_size > 5000
