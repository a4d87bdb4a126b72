"""Every objective's analytic gradient against finite differences (scipy.optimize.check_grad)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import check_grad

from fit._core import Block, build, value_grad
from fit._engine import prepare
from fit.stats import OrientedStats, PairStats

CASES = [
    # link, heteroscedastic, position, l2, var_prior
    ("probit", True, False, 0.0, 0.0),
    ("probit", True, False, 0.3, 2.0),
    ("probit", False, False, 0.0, 0.0),
    ("probit", False, False, 0.5, 0.0),
    ("logit", False, False, 0.0, 0.0),
    ("logit", False, False, 0.2, 0.0),
    ("probit", True, True, 0.0, 1.0),
    ("probit", False, True, 0.0, 0.0),
    ("logit", False, True, 0.1, 0.0),
]


def _blocks(stats: PairStats, rng: np.random.Generator, position: bool) -> list[Block]:
    """Two blocks of different sizes: the data as given, and a reshuffled 9-outcome copy."""
    if position:
        o = OrientedStats(
            np.concatenate([stats.i, stats.j]),
            np.concatenate([stats.j, stats.i]),
            np.concatenate([stats.n, stats.n + 1]),
            rng.random(2 * stats.n_pairs),
            stats.n_outcomes,
        )
        first = prepare(o, False, False, "a").block
    else:
        first = prepare(stats, False, False, "a").block
    second = Block(
        np.array([0, 1, 2, 3, 4, 5, 6, 7, 0, 2]),
        np.array([1, 2, 3, 4, 5, 6, 7, 8, 8, 5]),
        rng.integers(1, 4, 10).astype(float),
        rng.random(10),
        9,
    )
    return [first, second]


@pytest.mark.parametrize(("link", "hetero", "position", "l2", "var_prior"), CASES)
def test_gradient_matches_finite_differences(
    small_stats, rng, link, hetero, position, l2, var_prior
):
    pr = build(_blocks(small_stats, rng, position), link, hetero, position, 1e-6, l2, var_prior)
    for _ in range(3):
        x = rng.normal(scale=0.7, size=pr.n_params)
        if hetero:  # keep t away from 0, where log t² (in the prior) is singular
            n = pr.n_outcomes
            x[n : 2 * n] = np.sign(x[n : 2 * n]) * (0.3 + np.abs(x[n : 2 * n]))
        err = check_grad(lambda v: value_grad(v, pr)[0], lambda v: value_grad(v, pr)[1], x)
        scale = np.linalg.norm(value_grad(x, pr)[1])
        assert err <= 1e-5 * max(1.0, scale), (err, scale)


@pytest.mark.parametrize(
    ("link", "hetero"), [("probit", True), ("probit", False), ("logit", False)]
)
def test_torch_objective_equals_numpy(small_stats, rng, link, hetero, torch_cpu):
    torch = torch_cpu
    from fit.torch_backend import _tensors, _value_grad

    pr = build(_blocks(small_stats, rng, False), link, hetero, False, 1e-6, 0.2, 1.5)
    x = rng.normal(size=pr.n_params) + 0.5
    f_np, g_np = value_grad(x, pr)
    f_t, g_t = _value_grad(torch.tensor(x), pr, _tensors(pr, "cpu", torch.float64))
    assert float(f_t) == pytest.approx(f_np, rel=1e-12)
    np.testing.assert_allclose(g_t.numpy(), g_np, rtol=1e-10, atol=1e-12)


def test_gradient_extreme_z_is_finite(rng):
    """Far-apart utilities with the 'wrong' label: log Φ(−40) must not underflow to -inf."""
    stats = PairStats([0, 1], [1, 2], [1.0, 1.0], [0.0, 1.0], 3)
    pr = build([prepare(stats, False, False, "x").block], "probit", True, False, 1e-6, 0.0, 0.0)
    x = np.array([40.0, 0.0, -40.0, 1.0, 1.0, 1.0])
    f, g = value_grad(x, pr)
    assert np.isfinite(f) and np.all(np.isfinite(g))
    assert f > 100  # roughly z²/2 per misfit pair


@pytest.mark.parametrize(
    ("link", "hetero", "position"), [("probit", True, True), ("logit", False, True)]
)
def test_chunks_on_threads_equal_one_thread(rng, monkeypatch, link, hetero, position):
    """The per-term passes and Hessian products spread over threads (fit._core.for_chunks) give
    bit-for-bit what one thread gives: every chunk writes its own slice of the outputs."""
    import fit._core as core
    from fit._hessian import HessianOperator, value_grad_curv

    m, n = 5000, 40
    a = rng.integers(0, n, m)
    b = (a + 1 + rng.integers(0, n - 1, m)) % n
    blocks = [Block(a, b, rng.integers(1, 4, m).astype(float), rng.random(m), n)]
    pr = build(blocks, link, hetero, position, 1e-6, 0.1, 0.5 if hetero else 0.0)
    x = rng.normal(scale=0.7, size=pr.n_params)
    v = rng.normal(size=pr.n_params)
    serial_f, serial_g, _ = value_grad_curv(x, pr)
    serial_hv = HessianOperator(x, pr).matvec(v)
    monkeypatch.setattr(core, "CHUNK", 64)  # 79 chunks
    monkeypatch.setattr(core, "PARALLEL_MIN", 0)
    monkeypatch.setattr(core, "_workers", lambda: 2)
    f, g, _ = value_grad_curv(x, pr)
    assert f == serial_f and np.array_equal(g, serial_g)
    assert np.array_equal(HessianOperator(x, pr).matvec(v), serial_hv)
