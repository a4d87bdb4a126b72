from __future__ import annotations

import numpy as np
import pytest

from fit.analyses import AnalysisInputError
from fit.analyses.instrumental import (
    MarkovProcess,
    instrumental,
    plot_instrumental,
    processes_from_attributes,
)

GAMMA = 0.99


def random_process(rng: np.random.Generator, name: str) -> MarkovProcess:
    mids = [f"{name}-m{k}" for k in range(3)]
    ends = [f"{name}-t{k}" for k in range(4)]
    transitions = {f"{name}-s": dict(zip(mids, rng.dirichlet(np.ones(3)), strict=True))}
    for m in mids:
        targets = rng.choice(ends, size=2, replace=False)
        transitions[m] = dict(zip(targets, rng.dirichlet(np.ones(2)), strict=True))
    return MarkovProcess(name, (f"{name}-s", *mids, *ends), transitions)


def bellman_utilities(proc: MarkovProcess, rng: np.random.Generator, r0: float) -> np.ndarray:
    terminal = np.array([not proc.transitions.get(s) for s in proc.states])
    reward = np.where(terminal, rng.normal(scale=1.5, size=len(proc.states)), r0)
    return np.linalg.solve(np.eye(len(reward)) - GAMMA * proc.matrix(), reward)


def test_bellman_consistent_utilities_beat_the_shuffled_control():
    rng = np.random.default_rng(0)
    processes = [random_process(rng, f"p{k}") for k in range(10)]
    utilities: dict[str, float] = {}
    for proc in processes:
        v = bellman_utilities(proc, rng, r0=-0.1) + rng.normal(scale=0.01, size=len(proc.states))
        utilities.update(zip(proc.states, v.tolist(), strict=True))
    res = instrumental(processes, utilities, n_shuffles=20, seed=0)
    assert res.error < 0.02
    assert res.error < res.control_error / 3
    assert res.ratio < 1 / 3
    better = sum(f.error < f.control_error for f in res.processes)
    assert better >= 8


def test_exact_relation_is_fitted_exactly():
    rng = np.random.default_rng(1)
    proc = random_process(rng, "p")
    v = bellman_utilities(proc, rng, r0=0.3)
    res = instrumental([proc], dict(zip(proc.states, v.tolist(), strict=True)))
    fit = res.processes[0]
    assert fit.error == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(fit.value, v, atol=1e-9)
    np.testing.assert_allclose(fit.value, fit.reward + GAMMA * proc.matrix() @ fit.value)


def test_processes_from_attributes():
    attrs = {
        "s": {
            "kind": "markov_state",
            "process": "p",
            "role": "start",
            "successors": ["a", "b"],
            "probs": [0.5, 0.5],
        },
        "a": {
            "kind": "markov_state",
            "process": "p",
            "role": "intermediate",
            "successors": ["x", "y"],
            "probs": [0.2, 0.8],
        },
        "b": {
            "kind": "markov_state",
            "process": "p",
            "role": "intermediate",
            "successors": ["y"],
            "probs": [1.0],
        },
        "x": {
            "kind": "markov_state",
            "process": "p",
            "role": "terminal",
            "successors": [],
            "probs": [],
        },
        "y": {
            "kind": "markov_state",
            "process": "p",
            "role": "terminal",
            "successors": [],
            "probs": [],
        },
        "other": {"category": "health"},
    }
    (proc,) = processes_from_attributes(attrs)
    assert proc.start == "s" and set(proc.terminals) == {"x", "y"}
    assert list(proc.depths()) == [0, 1, 1, 2, 2]


def test_bad_process():
    with pytest.raises(AnalysisInputError, match="sum to 1"):
        MarkovProcess("p", ("s", "t"), {"s": {"t": 0.5}})
    with pytest.raises(AnalysisInputError, match="unknown state"):
        MarkovProcess("p", ("s", "t"), {"s": {"u": 1.0}})


def test_plot(tmp_path, check_png):
    rng = np.random.default_rng(2)
    processes = [random_process(rng, f"p{k}") for k in range(3)]
    utilities = {s: float(rng.normal()) for p in processes for s in p.states}
    check_png(plot_instrumental(instrumental(processes, utilities), tmp_path / "inst.png"))
