"""Political values: where a model's utilities over policy outcomes sit among reference entities.

Rows are agents (models, and the same or other models asked to answer as a reference persona
such as a party platform), columns are policy outcomes, entries are fitted utilities. Columns
are centred (each policy's mean over agents removed) and the matrix is decomposed by SVD; the
first two principal components place every agent in a plane, with the explained variance of
each component. Signs are fixed so that each component's largest loading is positive, which
makes the picture reproducible (a component's direction carries no meaning by itself).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fit.analyses._common import (
    AnalysisInputError,
    BoolArray,
    FloatArray,
    new_figure,
    save_figure,
    vectors_by_name,
)


@dataclass(frozen=True)
class PoliticalResult:
    """Principal components of agents' policy utilities."""

    agents: tuple[str, ...]
    """Agent names, in the order of ``coords``."""
    is_reference: BoolArray
    """Which agents are reference entities (personas) rather than models, shape (A,)."""
    outcome_ids: tuple[str, ...]
    """Policy outcome ids, in the order of the loadings (positions when vectors were plain)."""
    coords: FloatArray
    """Agent coordinates on the leading components, shape (A, n_components)."""
    components: FloatArray
    """Unit loadings of each component on the policies, shape (n_components, K)."""
    explained_variance_ratio: FloatArray
    """Share of the total (column-centred) variance per component, shape (n_components,)."""
    flat_agents: tuple[str, ...] = ()
    """Agents whose utilities barely vary over the policies (sd < 1e-6 of the largest): their
    place in the plane says nothing about their values."""
    note: str | None = None
    """Why the explained variance cannot be read as agreement: two agents (PC1 always explains
    100 %), a rank-one matrix, or flat agents; None when none of these holds."""
    pc_ci: FloatArray = field(default_factory=lambda: np.zeros((0, 0, 2)))
    """95 % bootstrap-over-policies interval of each agent's coordinate on each kept component,
    shape (A, n_components, 2)."""
    explained_ci: FloatArray = field(default_factory=lambda: np.zeros((0, 2)))
    """95 % bootstrap-over-policies interval of each component's explained-variance share,
    shape (n_components, 2)."""


def political_pca(
    utilities: Mapping[str, Mapping[str, float] | Sequence[float] | np.ndarray],
    *,
    references: Collection[str] = (),
    n_components: int = 2,
    n_boot: int = 1000,
    seed: int = 0,
) -> PoliticalResult:
    """PCA of utility vectors over policy outcomes.

    Args:
        utilities: agent name → utilities over the policies, either a mapping outcome id → μ (the
            policies common to all agents are used) or equal-length sequences.
        references: names of the agents that are reference entities (drawn differently).
        n_components: components to keep (at most min(A, K)).
        n_boot: bootstrap-over-policies replicates of the PC1 intervals (0 = none).
        seed: seed of the bootstrap.

    Flags (``note``) identical agents (explained variance NaN: there is nothing to explain),
    two agents, a rank-one matrix and flat agents, where "PC1 explains 100 %" is an artefact.
    """
    names, ids, matrix = vectors_by_name("political_pca", utilities)
    a, k = matrix.shape
    if a < 2 or k < 2:
        raise AnalysisInputError(
            f"political_pca: need at least 2 agents and 2 policies, got {a} and {k}"
        )
    if not np.all(np.isfinite(matrix)):
        raise AnalysisInputError("political_pca: utilities must be finite")
    unknown = set(references) - set(names)
    if unknown:
        raise AnalysisInputError(f"political_pca: unknown reference agent(s) {sorted(unknown)}")
    centred = matrix - matrix.mean(axis=0, keepdims=True)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    keep = max(1, min(n_components, len(s)))
    biggest = np.argmax(np.abs(vt[:keep]), axis=1)
    signs = np.sign(vt[np.arange(keep), biggest])
    signs[signs == 0] = 1.0
    total = float(np.sum(s * s))
    ratio = (s[:keep] ** 2) / total if total > 0 else np.zeros(keep)
    sd = matrix.std(axis=1)
    flat = tuple(n for n, v in zip(names, sd, strict=True) if v <= 1e-6 * max(sd.max(), 1e-300))
    rank = int(np.sum(s > 1e-9 * s[0]))
    note = None
    if total <= 1e-12 * max(float(np.sum(matrix * matrix)), 1e-300):
        ratio = np.full(keep, np.nan)
        note = (
            f"the {a} agents have identical utilities over the {k} policies: no variance, no "
            "components (a persona changed nothing)"
        )
    elif a == 2:
        note = "two agents: PC1 explains 100 % of any two vectors; read the distance only"
    elif rank < 2:
        note = "the centred utilities have rank 1: PC1 explains 100 % by construction"
    if flat:
        note = (note + "; " if note else "") + f"flat agents (no variance): {', '.join(flat)}"
    pc_ci, ev_ci = _bootstrap(centred, vt[:keep] * signs[:, None], n_boot, seed)
    return PoliticalResult(
        agents=tuple(names),
        is_reference=np.array([n in set(references) for n in names]),
        outcome_ids=tuple(ids) if ids is not None else tuple(str(i) for i in range(k)),
        coords=u[:, :keep] * s[:keep] * signs,
        components=vt[:keep] * signs[:, None],
        explained_variance_ratio=ratio,
        flat_agents=flat,
        note=note,
        pc_ci=pc_ci,
        explained_ci=ev_ci,
    )


def _bootstrap(
    centred: FloatArray, loadings: FloatArray, n_boot: int, seed: int
) -> tuple[FloatArray, FloatArray]:
    """Resample policies (columns), redo the SVD of every replicate at once, align each
    component's sign with the point estimate's loadings.

    Returns:
        (coordinate intervals (A, C, 2), explained-share intervals (C, 2)), C = len(loadings).
    """
    from fit.analyses.intervals import percentile, resample

    a, k = centred.shape
    c = len(loadings)
    if k < 3 or n_boot < 1:
        return np.full((a, c, 2), np.nan), np.full((c, 2), np.nan)
    idx = resample(k, n_boot, seed)
    stack = np.moveaxis(centred[:, idx], 1, 0)  # (B, A, K)
    stack = stack - stack.mean(axis=1, keepdims=True)
    u, s, vt = np.linalg.svd(stack, full_matrices=False)
    c = min(c, s.shape[1])
    sign = np.sign(np.einsum("bck,cbk->bc", vt[:, :c, :], loadings[:c][:, idx]))
    sign[sign == 0] = 1.0
    coords = u[:, :, :c] * (s[:, :c] * sign)[:, None, :]  # (B, A, C)
    total = np.sum(s * s, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, s[:, :c] ** 2 / total, np.nan)  # (B, C)
    q = np.nanquantile(coords, [0.025, 0.975], axis=0)  # (2, A, C)
    out = np.full((a, len(loadings), 2), np.nan)
    out[:, :c, :] = np.moveaxis(q, 0, -1)
    ev = np.full((len(loadings), 2), np.nan)
    ev[:c] = np.array([percentile(share[:, j]) for j in range(c)])  # c <= 2 components
    return out, ev


def plot_political(result: PoliticalResult, path: str | Path) -> Path:
    """Scatter of agents on the first two components, labelled, references drawn as squares."""
    fig = new_figure(6.5, 5.5)
    ax = fig.add_subplot()
    xy = (
        result.coords
        if result.coords.shape[1] >= 2
        else np.c_[result.coords, np.zeros(len(result.coords))]
    )
    ref = result.is_reference
    ax.scatter(xy[~ref, 0], xy[~ref, 1], marker="o", color="#4c72b0", label="models")
    if ref.any():
        ax.scatter(xy[ref, 0], xy[ref, 1], marker="s", color="#c44e52", label="references")
    for name, (x, y) in zip(result.agents, xy[:, :2], strict=True):
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ratio = result.explained_variance_ratio
    ax.set_xlabel(f"PC1 ({100 * ratio[0]:.0f}% of variance)")
    ax.set_ylabel(f"PC2 ({100 * ratio[1]:.0f}% of variance)" if len(ratio) > 1 else "PC2")
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.axvline(0, color="grey", linewidth=0.5)
    ax.set_title("Political values: PCA of policy utilities")
    ax.legend()
    return save_figure(fig, path)
