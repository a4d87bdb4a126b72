"""Numerics of target preferences and utility control: panel aggregation, the target fit, the
train/held-out split, agreement and political lean."""

from __future__ import annotations

import numpy as np
import pytest

from fit.analyses import AnalysisInputError
from fit.analyses.control import (
    ROLES,
    aggregate_panel,
    agreement,
    compare,
    control_split,
    fit_target,
    lean,
    lean_axis,
    plot_control,
)


def test_mean_and_majority_aggregation() -> None:
    p = np.array(
        [
            [0.9, 0.2, 0.5, 0.6],
            [0.8, 0.4, 0.5, np.nan],
            [0.1, 0.9, 0.5, 0.3],
        ]
    )
    mean = aggregate_panel(p, "mean")
    np.testing.assert_allclose(mean.p, [0.6, 0.5, 0.5, 0.45])
    np.testing.assert_allclose(mean.vote_share, [2 / 3, 1 / 3, 0.5, 0.5])
    np.testing.assert_array_equal(mean.n_members, [3, 3, 3, 2])
    major = aggregate_panel(p, "majority")
    np.testing.assert_array_equal(major.p, [1.0, 0.0, 0.5, 0.5])
    np.testing.assert_allclose(major.p_mean, mean.p)
    # members 0 and 1 agree with both decided pairs, member 2 with neither
    np.testing.assert_allclose(major.member_agreement, [1.0, 1.0, 0.0])


@pytest.mark.parametrize(
    ("p", "method", "match"),
    [
        (np.zeros((0, 3)), "mean", "at least one member"),
        (np.zeros((2, 0)), "mean", "at least one member"),
        (np.array([[0.5, np.nan], [0.2, np.nan]]), "mean", "no usable answer"),
        (np.ones((2, 2)) * 0.3, "median", "unknown method"),
    ],
)
def test_aggregation_errors(p, method, match) -> None:
    with pytest.raises(AnalysisInputError, match=match):
        aggregate_panel(p, method)


def test_fit_target_recovers_an_order_even_from_hard_labels() -> None:
    n = 6
    i, j = np.triu_indices(n, k=1)
    hard = np.ones(len(i))  # lower index always preferred
    mu, sigma2 = fit_target(i, j, hard, n)
    assert np.all(np.diff(mu) < 0) and np.all(np.isfinite(sigma2))
    # the order of i and j does not matter; NaN pairs are left out
    mu2, _ = fit_target(j, i, 1.0 - hard, n)
    np.testing.assert_allclose(mu, mu2, atol=1e-6)
    p = np.where(np.arange(len(i)) == 0, np.nan, 0.8)
    mu3, _ = fit_target(i, j, p, n)
    assert np.all(np.isfinite(mu3))
    with pytest.raises(AnalysisInputError, match="no pair"):
        fit_target(i[:1], j[:1], [np.nan], n)


def test_split_holds_out_outcomes_and_pairs() -> None:
    n = 10
    i, j = np.triu_indices(n, k=1)
    split = control_split(n, i, j, heldout_outcomes=0.2, heldout_pairs=0.25, seed=1)
    held = split.heldout_outcome
    assert held.sum() == 2
    touches = held[i] | held[j]
    assert np.all(split.mask("heldout_outcome") == touches)
    inner = (~touches).sum()
    assert split.mask("heldout_pair").sum() == round(0.25 * inner)
    assert split.mask("train").sum() == inner - round(0.25 * inner)
    again = control_split(n, i, j, heldout_outcomes=0.2, heldout_pairs=0.25, seed=1)
    np.testing.assert_array_equal(split.role, again.role)
    none = control_split(n, i, j, heldout_outcomes=0.0, heldout_pairs=0.0)
    assert set(none.role) == {"train"}


def test_split_errors() -> None:
    with pytest.raises(AnalysisInputError, match="heldout_pairs"):
        control_split(4, [0], [1], heldout_pairs=1.0)
    # one pair over four outcomes, two held out: most seeds hold out one of the pair's outcomes
    raised = 0
    for seed in range(10):
        try:
            split = control_split(4, [0], [1], heldout_outcomes=0.5, seed=seed)
        except AnalysisInputError as exc:
            assert "no training pair" in str(exc)
            raised += 1
        else:
            assert list(split.role) == ["train"]
    assert 0 < raised < 10


def test_agreement_counts_sides_and_distances() -> None:
    a = agreement([0.9, 0.4, 0.5, 0.7, np.nan], [0.8, 0.6, 0.9, 0.5, 0.1])
    # decided pairs: 0 (agree), 1 (disagree), 2 (model at 1/2: half); pair 3 has target 1/2
    assert a.side == pytest.approx(0.5)
    assert a.mean_abs == pytest.approx((0.1 + 0.2 + 0.4 + 0.2) / 4)
    assert a.n_pairs == 4
    empty = agreement([], [])
    assert np.isnan(empty.side) and empty.n_pairs == 0


def test_lean_axis_points_from_left_to_right_members() -> None:
    rng = np.random.default_rng(0)
    n, k = 12, 30
    direction = rng.standard_normal(n)
    base = rng.standard_normal(n)
    leans = rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], size=k)
    members = base + leans[:, None] * direction + 0.1 * rng.standard_normal((k, n))
    axis = lean_axis(members, leans)
    assert axis is not None
    assert np.linalg.norm(axis) == pytest.approx(1.0)
    assert lean(base + 2 * direction, axis) > lean(base, axis) > lean(base - 2 * direction, axis)
    assert lean(direction, axis) > 0.9
    assert lean_axis(members, np.zeros(k)) is None


def test_compare_and_figure(tmp_path) -> None:
    n = 8
    i, j = np.triu_indices(n, k=1)
    split = control_split(n, i, j, seed=0)
    target = np.full(len(i), 0.95)
    before = np.full(len(i), 0.5)
    after = np.where(split.mask("heldout_outcome"), 0.5, 0.9)
    mu_t, _ = fit_target(i, j, target, n)
    res = compare(before, after, target, split, (mu_t, np.zeros(n), mu_t))
    assert res.agreement_before["train"].side == 0.5
    assert res.agreement_after["heldout_pair"].side == 1.0
    assert res.agreement_after["heldout_outcome"].side == 0.5
    assert set(res.agreement_after) == set(ROLES)
    assert res.spearman_after == pytest.approx(1.0)
    path = plot_control(res, tmp_path / "control.png")
    assert path.read_bytes().startswith(b"\x89PNG")
