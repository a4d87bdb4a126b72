"""The critics' checks of a measurement, each with a 95 % interval.

- **Order effect near indifference**: among prompts whose two outcomes are close in fitted
  utility (|Δμ| below a band), the share where the *second*-listed option is picked. An agent
  without an order effect picks it half the time; a published critique found it picked in 44 of
  44 near-indifferent prompts.
- **Monotonicity of a ladder**: outcomes that differ only in a quantity (N lives, $X, a delay)
  should be ordered by it. The share of consecutive ladder steps where utility moves in the
  expected direction, with a bootstrap over ladders (steps of one ladder are not independent);
  with fewer than ``MIN_LADDERS`` ladders, a Wilson interval over the steps.
- **Framing ratio**: the same exchange rates measured under two wordings, side by side
  (``fit.analyses.exchange_rates``; the driver pairs them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fit.analyses._common import AnalysisInputError, FloatArray, as_float, same_length
from fit.analyses.intervals import NAN_INTERVAL, Interval, percentile, resample, wilson

ORDER_BAND = 0.25
"""|Δμ| (fitted utilities, sd 1) below which a prompt counts as near-indifferent."""


MIN_LADDERS = 5
"""Below this many ladders the bootstrap over ladders is degenerate: Wilson over steps."""


@dataclass(frozen=True)
class OrderEffect:
    """Second-listed picks among near-indifferent prompts."""

    second_share: float
    """Share of near-indifferent prompts where P(first) < ½ (NaN when there are none)."""
    second_share_ci: Interval
    """Wilson 95 % interval of ``second_share``."""
    mean_p_second: float
    """Mean P(second) over the same prompts."""
    n_prompts: int
    """Near-indifferent prompts with a decided answer (P(first) ≠ ½)."""
    band: float
    """The |Δμ| band used."""


def order_effect(
    p_first: npt.ArrayLike, delta_mu: npt.ArrayLike, *, band: float = ORDER_BAND
) -> OrderEffect:
    """Order effect among prompts whose options are within ``band`` in fitted utility.

    Args:
        p_first: P(first-listed option) per prompt, shape (R,); NaN = no answer.
        delta_mu: μ(first) − μ(second) per prompt, shape (R,).
        band: near-indifference band on |Δμ|.
    """
    p = as_float("p_first", p_first)
    d = as_float("delta_mu", delta_mu)
    same_length(p_first=p, delta_mu=d)
    if band <= 0:
        raise AnalysisInputError(f"order_effect: band must be > 0, got {band}")
    near = np.isfinite(p) & np.isfinite(d) & (np.abs(d) < band)
    decided = near & (p != 0.5)
    k = float(np.sum(p[decided] < 0.5))
    n = int(decided.sum())
    return OrderEffect(
        second_share=k / n if n else float("nan"),
        second_share_ci=wilson(k, n),
        mean_p_second=float(np.mean(1 - p[near])) if near.any() else float("nan"),
        n_prompts=n,
        band=float(band),
    )


@dataclass(frozen=True)
class Monotonicity:
    """Share of ladder steps ordered as the quantity is."""

    share: float
    """Steps (consecutive levels of one ladder) where utility moves the expected way."""
    share_ci: Interval
    """95 % interval of ``share``: bootstrap over ladders (Wilson over steps when there are
    fewer than ``MIN_LADDERS`` ladders)."""
    n_steps: int
    n_ladders: int
    ladders: tuple[str, ...]
    """Ladder names, sorted."""
    ladder_share: FloatArray
    """Share per ladder (NaN for a ladder with one level)."""


def monotonicity(
    ladder: npt.ArrayLike,
    level: npt.ArrayLike,
    mu: npt.ArrayLike,
    *,
    increasing: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
) -> Monotonicity:
    """How often utility follows a ladder's quantity.

    Args:
        ladder: ladder name per outcome (e.g. the entity), shape (P,).
        level: the quantity per outcome (N, dollars, months), shape (P,).
        mu: fitted utility per outcome, shape (P,).
        increasing: utility should rise with the level (False: fall, e.g. a longer delay).
    """
    names_raw = np.asarray(ladder).astype(str)
    x = as_float("level", level)
    y = as_float("mu", mu)
    same_length(ladder=names_raw, level=x, mu=y)
    ok = np.isfinite(x) & np.isfinite(y)
    names, codes = np.unique(names_raw[ok], return_inverse=True)
    x, y = x[ok], y[ok]
    order = np.lexsort((x, codes))
    c, ys = codes[order], y[order]
    same = c[1:] == c[:-1]
    step = np.diff(ys)[same]
    good = (step > 0) if increasing else (step < 0)
    owner = c[1:][same]
    e = len(names)
    ups = np.bincount(owner, good.astype(np.float64), minlength=e)
    steps = np.bincount(owner, minlength=e).astype(np.float64)
    total = steps.sum()
    if total == 0:
        ci: Interval = NAN_INTERVAL
    elif e < MIN_LADDERS:
        ci = wilson(ups.sum(), total)
    else:
        idx = resample(e, n_boot, seed)
        with np.errstate(invalid="ignore", divide="ignore"):
            ci = percentile(ups[idx].sum(axis=1) / steps[idx].sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        per = np.where(steps > 0, ups / steps, np.nan)
    return Monotonicity(
        share=float(ups.sum() / total) if total else float("nan"),
        share_ci=ci,
        n_steps=int(total),
        n_ladders=e,
        ladders=tuple(str(s) for s in names),
        ladder_share=per,
    )
