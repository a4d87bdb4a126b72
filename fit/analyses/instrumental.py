"""Instrumental values: does a model value intermediate states for what they lead to?

Each process is a small Markov chain over outcome states: a start state, a few intermediate
states, and terminal outcomes, with known transition probabilities. If a model values states
instrumentally, its utility of a state should behave like a value function,

    V(s) = R(s) + γ · Σ_{s'} P(s'|s) · V(s'),       γ = 0.99,

(with uniform transitions the sum is the plain mean over successors). Left free per state, R
would absorb any utilities, so the reward is restricted: every terminal outcome has its own
reward, while all non-terminal states of a process share one reward r₀ (what being on the way is
worth in itself). Then V = (I − γP)⁻¹·R is linear in the parameters θ = (r₀, R_terminal), θ is
fitted to the model's utilities Û by least squares, and the score of a process is
``mean |Û − (R + γ·P·V)|`` over its states, i.e. mean |Û − V̂|.

The control refits each process after shuffling its transitions: the targets of the edges are
permuted among the states at the same depth, which keeps the shape of the chain but attaches
intermediate states to the wrong futures. Instrumental valuation shows as a lower score for the
real transitions than for the shuffled ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fit.analyses._common import (
    AnalysisInputError,
    FloatArray,
    lookup,
    new_figure,
    save_figure,
)

_PROB_TOLERANCE = 1e-3


@dataclass(frozen=True)
class MarkovProcess:
    """A small Markov chain over outcome states."""

    id: str
    """Name of the process."""
    states: tuple[str, ...]
    """Outcome ids of all its states (start, intermediates, terminals)."""
    transitions: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    """State → {successor: probability}; probabilities of a state sum to 1. States without an
    entry are terminal."""
    start: str = ""
    """The start state (defaults to the first of ``states``)."""

    def __post_init__(self) -> None:
        if len(set(self.states)) != len(self.states) or len(self.states) < 2:
            raise AnalysisInputError(
                f"process {self.id!r}: needs at least 2 states with unique ids, got "
                f"{list(self.states)}"
            )
        object.__setattr__(self, "start", self.start or self.states[0])
        known = set(self.states)
        if self.start not in known:
            raise AnalysisInputError(f"process {self.id!r}: start {self.start!r} is not a state")
        for s, succ in self.transitions.items():
            unknown = [t for t in [s, *succ] if t not in known]
            if unknown:
                raise AnalysisInputError(
                    f"process {self.id!r}: transition from {s!r} names unknown state(s) {unknown}"
                )
            total = sum(succ.values())
            if succ and (abs(total - 1.0) > _PROB_TOLERANCE or min(succ.values()) < 0):
                raise AnalysisInputError(
                    f"process {self.id!r}: transition probabilities from {s!r} are "
                    f"{dict(succ)}; they must be >= 0 and sum to 1"
                )
        if not self.terminals:
            raise AnalysisInputError(f"process {self.id!r}: has no terminal state")

    @property
    def terminals(self) -> tuple[str, ...]:
        """States with no outgoing transitions."""
        return tuple(s for s in self.states if not self.transitions.get(s))

    def matrix(self) -> FloatArray:
        """Transition matrix P[s, s'] in the order of ``states``, shape (n, n)."""
        index = {s: k for k, s in enumerate(self.states)}
        p = np.zeros((len(self.states), len(self.states)))
        for s, succ in self.transitions.items():
            for t, prob in succ.items():
                p[index[s], index[t]] += prob
        return p

    def depths(self) -> np.ndarray:
        """Shortest number of steps from the start to each state (−1 if unreachable)."""
        p = self.matrix() > 0
        depth = np.full(len(self.states), -1)
        frontier = np.zeros(len(self.states), dtype=bool)
        frontier[self.states.index(self.start)] = True
        d = 0
        while frontier.any():
            depth[frontier] = d
            frontier = p[frontier].any(axis=0) & (depth < 0)
            d += 1
        return depth


@dataclass(frozen=True)
class ProcessFit:
    """Bellman fit of one process."""

    process: str
    """Process id."""
    states: tuple[str, ...]
    """State ids, in the order of the arrays."""
    utility: FloatArray
    """Fitted utilities Û of the states, shape (n,)."""
    reward: FloatArray
    """Fitted reward R per state (r₀ on non-terminals), shape (n,)."""
    value: FloatArray
    """Implied value V = (I − γP)⁻¹R, shape (n,)."""
    error: float
    """mean |Û − (R + γ·P·V)| over the states."""
    control_error: float
    """Mean of the same score over the shuffled-transition refits (NaN if no shuffle exists)."""


@dataclass(frozen=True)
class InstrumentalResult:
    """Bellman-consistency of utilities across processes, with the shuffled control."""

    processes: tuple[ProcessFit, ...]
    """Per-process fits."""
    error: float
    """Mean absolute Bellman residual over all states of all processes."""
    control_error: float
    """The same for the shuffled-transition control (mean over shuffles)."""
    gamma: float
    """Discount factor used."""
    n_shuffles: int
    """Shuffles per process in the control."""

    @property
    def ratio(self) -> float:
        """error / control_error: below 1 when real transitions explain the utilities better."""
        return self.error / self.control_error if self.control_error > 0 else float("nan")


def processes_from_attributes(attributes: Mapping[str, Mapping[str, Any]]) -> list[MarkovProcess]:
    """Processes from outcome attributes as written by ``elicit.generators``.

    A state outcome has ``kind: markov_state``, ``process`` (its process id), ``role``
    (``start``, ``intermediate`` or ``terminal``), and ``successors`` / ``probs`` (empty for a
    terminal).
    """
    by_process: dict[str, list[str]] = {}
    for oid, attrs in attributes.items():
        if attrs.get("kind") == "markov_state":
            by_process.setdefault(str(attrs["process"]), []).append(oid)
    processes = []
    for pid, ids in by_process.items():
        starts = [i for i in ids if attributes[i].get("role") == "start"]
        if len(starts) != 1:
            raise AnalysisInputError(f"process {pid!r}: expected one start state, got {starts}")
        transitions = {
            i: dict(zip(attributes[i]["successors"], attributes[i]["probs"], strict=True))
            for i in ids
            if attributes[i].get("successors")
        }
        processes.append(MarkovProcess(pid, tuple(ids), transitions, starts[0]))
    return processes


def _bellman_fit(
    u: FloatArray, p: FloatArray, terminal: np.ndarray, gamma: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Least-squares fit for a stack of transition matrices.

    Args:
        u: utilities, shape (n,).
        p: transition matrices, shape (S, n, n).
        terminal: mask of terminal states, shape (n,).

    Returns:
        (reward (S, n), value (S, n), mean abs residual (S,)).
    """
    n = len(u)
    # R = E·θ with θ = (r₀, R_t1, …): column 0 feeds every non-terminal state.
    t_idx = np.flatnonzero(terminal)
    e = np.zeros((n, 1 + len(t_idx)))
    e[~terminal, 0] = 1.0
    e[t_idx, 1 + np.arange(len(t_idx))] = 1.0
    m = np.linalg.solve(np.eye(n)[None] - gamma * p, np.broadcast_to(e, (len(p), *e.shape)))
    theta = np.linalg.pinv(m) @ u  # (S, k)
    reward = theta @ e.T
    value = np.einsum("snk,sk->sn", m, theta)
    # Residual of the Bellman relation against the utilities: Û − (R + γ·P·V) = Û − V.
    bellman = reward + gamma * np.einsum("snm,sm->sn", p, value)
    return reward, value, np.mean(np.abs(u[None] - bellman), axis=1)


def _shuffles(process: MarkovProcess, n_shuffles: int, rng: np.random.Generator) -> FloatArray:
    """Transition matrices with edge targets permuted within depth levels, (S', n, n)."""
    p = process.matrix()
    depth = process.depths()
    levels = [np.flatnonzero(depth == d) for d in range(1, int(depth.max()) + 1)]
    levels = [lv for lv in levels if len(lv) > 1]
    if not levels:
        return np.zeros((0, *p.shape))
    out = []
    for _ in range(n_shuffles):
        perm = np.arange(len(p))
        for _attempt in range(20):  # redraw an identity permutation
            perm = np.arange(len(p))
            for lv in levels:
                perm[lv] = rng.permutation(lv)
            if np.any(perm != np.arange(len(p))):
                break
        shuffled = np.zeros_like(p)
        shuffled[:, perm] = p  # edge s → s' becomes s → perm[s']
        out.append(shuffled)
    return np.stack(out)


def instrumental(
    processes: Sequence[MarkovProcess],
    utilities: Mapping[str, float],
    *,
    gamma: float = 0.99,
    n_shuffles: int = 20,
    seed: int = 0,
) -> InstrumentalResult:
    """Fit reward and value per process and score the Bellman relation, with a shuffled control.

    Args:
        processes: the processes (see :func:`processes_from_attributes`).
        utilities: outcome id → fitted utility μ of every state.
        gamma: discount factor γ in (0, 1).
        n_shuffles: shuffled-transition refits per process for the control.
        seed: seed of the shuffles.
    """
    if not processes:
        raise AnalysisInputError("instrumental: no processes given")
    if not 0.0 < gamma < 1.0:
        raise AnalysisInputError(f"instrumental: gamma must lie in (0, 1), got {gamma}")
    rng = np.random.default_rng(seed)
    fits = []
    abs_real: list[FloatArray] = []
    abs_control: list[float] = []
    for proc in processes:
        u = lookup(f"utilities of process {proc.id!r}", utilities, proc.states)
        terminal = np.array([not proc.transitions.get(s) for s in proc.states])
        reward, value, err = _bellman_fit(u, proc.matrix()[None], terminal, gamma)
        shuffled = _shuffles(proc, n_shuffles, rng)
        control = (
            float(_bellman_fit(u, shuffled, terminal, gamma)[2].mean())
            if len(shuffled)
            else float("nan")
        )
        fits.append(
            ProcessFit(proc.id, proc.states, u, reward[0], value[0], float(err[0]), control)
        )
        abs_real.append(np.abs(u - reward[0] - gamma * proc.matrix() @ value[0]))
        if np.isfinite(control):
            abs_control.extend([control] * len(u))
    return InstrumentalResult(
        processes=tuple(fits),
        error=float(np.concatenate(abs_real).mean()),
        control_error=float(np.mean(abs_control)) if abs_control else float("nan"),
        gamma=float(gamma),
        n_shuffles=int(n_shuffles),
    )


def intervals(
    result: InstrumentalResult, *, n_boot: int = 1000, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """95 % bootstrap-over-processes intervals of ``error``, ``control_error`` and ``ratio``
    (each process weighted by its number of states, as the point estimates are)."""
    from fit.analyses.intervals import NAN_INTERVAL, percentile, resample

    names = ("error", "control_error", "ratio")
    n = len(result.processes)
    if n < 2:
        return dict.fromkeys(names, NAN_INTERVAL)
    size = np.array([len(f.states) for f in result.processes], dtype=np.float64)
    err = np.array([f.error for f in result.processes]) * size
    ctl = np.array([f.control_error for f in result.processes]) * size
    idx = resample(n, n_boot, seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        e = err[idx].sum(axis=1) / size[idx].sum(axis=1)
        c = ctl[idx].sum(axis=1) / size[idx].sum(axis=1)
        return {"error": percentile(e), "control_error": percentile(c), "ratio": percentile(e / c)}


def plot_instrumental(result: InstrumentalResult, path: str | Path) -> Path:
    """Bars per process: Bellman error with the real transitions and with shuffled ones."""
    fig = new_figure(max(6.0, 0.6 * len(result.processes) + 2.0), 4.5)
    ax = fig.add_subplot()
    x = np.arange(len(result.processes))
    ax.bar(x - 0.2, [f.error for f in result.processes], 0.4, label="real transitions")
    ax.bar(x + 0.2, [f.control_error for f in result.processes], 0.4, label="shuffled (control)")
    ax.set_xticks(x, [f.process for f in result.processes], rotation=45, ha="right")
    ax.set_ylabel("mean |Û − (R + γ·V′)|")
    ax.set_title(
        f"Instrumental values: error {result.error:.3f} vs control {result.control_error:.3f}"
    )
    ax.legend()
    return save_figure(fig, path)
