"""Do the position-bias intervals cover the planted values? Coverage over seeds, through the
real pipeline (``valuescope run``: held-out round, start graph, active rounds, final fit).

The prompt-reading simulated agent has utilities μ ~ N(0, 1) (seeded), noise σ, label noise ε
(probit-scale noise on each answer) and a position bias β toward the first-listed option. Two
fitted quantities are checked against what was planted:

- ``first_at_tie``: P(first-listed chosen) between two outcomes of equal utility, planted
  Φ(β / √(2σ²(1 + ε²))) (label noise flattens the average answer by √(1 + ε²));
- ``position_bias``: β on the scale of the standardised utilities (sd 1 over outcomes), planted
  β / sd(μ_true) (the sd of the drawn utilities, not 1).

    python benchmarks/beta_coverage.py --seeds 20 --design active --label-noise 0.5
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from scipy.special import ndtr


def one(seed: int, args: argparse.Namespace, root: str) -> dict[str, float]:
    from cluster.pipeline.run import run
    from cluster.spec import parse_spec
    from cluster.store import HOLDOUT_ROUND, RunStore
    from fit.full import fit_with_intervals
    from fit.stats import OrientedStats

    spec = parse_spec(
        {
            "name": f"beta-{seed}",
            "root": root,
            "outcomes": ["starter"],
            "models": [
                {
                    "name": "simulated",
                    "seed": seed,
                    "noise": args.noise,
                    "label_noise": args.label_noise,
                    "position_bias": args.beta,
                }
            ],
            "design": {"kind": args.design, "per_round": args.per_round},
            "execution": {"progress": "none"},
        }
    )
    [result] = run(spec)
    fit = result.fit
    with RunStore(root) as store:
        run_id = spec.resolved_run_id()
        rows = store.utility_rows(run_id, "simulated", fit["fit_id"])
        train = [r for r in store.rounds(run_id, "simulated") if r != HOLDOUT_ROUND]
        ids = [r["outcome_id"] for r in rows]
        oriented = store.oriented_stats(run_id, "simulated", ids, train)
    truth = np.array([r["true_utility"] for r in rows])
    se = np.array([(r["mu_hi"] - r["mu_lo"]) / 3.92 for r in rows])
    planted = args.beta / truth.std()
    tie = float(ndtr(args.beta / np.sqrt(2 * args.noise**2 * (1 + args.label_noise**2))))
    # the spread of the estimates net of their error: what sd 1 would be without estimation noise
    net = np.sqrt(max(1.0 - float(np.mean(se**2)), 1e-9))
    relabelled = float("nan")
    if args.relabel:
        # the same pairs in the same orders, answered afresh by the agent's model: the choice of
        # pairs no longer depends on the noise of the answers it is fitted to
        rng = np.random.default_rng([seed, 99])
        f, s = oriented.first, oriented.second
        z = (truth[f] - truth[s] + args.beta) / (args.noise * np.sqrt(2.0))
        p = ndtr(z + args.label_noise * rng.standard_normal(len(z)))
        fresh = OrientedStats(f, s, np.ones(len(f)), p, oriented.n_outcomes)
        refit = fit_with_intervals(fresh)
        assert refit.position is not None and np.all(oriented.n == 1)
        relabelled = refit.position.beta / planted
    # the answers' noise on the utilities' scale: planted σ·√(1 + ε²)/sd(μ_true), fitted √mean σ²
    noise_ratio = float(np.sqrt(np.mean([r["sigma2"] for r in rows]))) / (
        args.noise * np.sqrt(1 + args.label_noise**2) / truth.std()
    )
    return {
        "noise_ratio": noise_ratio,
        "relabelled": relabelled,
        "beta": fit["position_bias"],
        "lo": fit["position_bias_lo"],
        "hi": fit["position_bias_hi"],
        "planted": planted,
        "covered": float(fit["position_bias_lo"] <= planted <= fit["position_bias_hi"]),
        "net": fit["position_bias"] / net,
        "tie": fit["first_at_tie"],
        "tie_planted": tie,
        "tie_covered": float(fit["first_at_tie_lo"] <= tie <= fit["first_at_tie_hi"]),
        "tie_width": fit["first_at_tie_hi"] - fit["first_at_tie_lo"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--design", choices=["active", "full"], default="active")
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--label-noise", type=float, default=0.5)
    parser.add_argument("--per-round", type=int, default=200)
    parser.add_argument(
        "--relabel",
        action="store_true",
        help="also refit each run's pairs on fresh answers drawn from the agent's model",
    )
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="vs-beta-")
    start = time.perf_counter()
    rows = [one(seed, args, root) for seed in range(args.seeds)]
    ratio = np.array([r["beta"] / r["planted"] for r in rows])
    net_ratio = np.array([r["net"] / r["planted"] for r in rows])
    covered = np.array([r["covered"] for r in rows])
    width = np.array([r["hi"] - r["lo"] for r in rows])
    print(
        f"design {args.design}, β {args.beta}, σ {args.noise}, label noise {args.label_noise}, "
        f"{args.seeds} seeds, {time.perf_counter() - start:.0f} s"
    )
    print(
        f"fitted/planted β: mean {ratio.mean():.3f} (sd {ratio.std(ddof=1):.3f}); "
        f"95 % interval covers the planted β in {int(covered.sum())}/{len(rows)} "
        f"({covered.mean():.0%}); mean width {width.mean():.3f}"
    )
    tie_cov = np.array([r["tie_covered"] for r in rows])
    tie_err = np.array([r["tie"] - r["tie_planted"] for r in rows])
    print(
        f"first-listed chosen at a tie: planted {rows[0]['tie_planted']:.3f}, fitted − planted "
        f"mean {tie_err.mean():+.4f} (sd {tie_err.std(ddof=1):.4f}); 95 % interval covers it in "
        f"{int(tie_cov.sum())}/{len(rows)} ({tie_cov.mean():.0%}); mean width "
        f"{np.mean([r['tie_width'] for r in rows]):.3f}"
    )
    noise = np.array([r["noise_ratio"] for r in rows])
    print(
        f"noise relative to the utilities' spread (√mean σ²): fitted/planted {noise.mean():.3f} "
        f"(sd {noise.std(ddof=1):.3f})"
    )
    if args.relabel:
        fresh = np.array([r["relabelled"] for r in rows])
        print(
            f"same pairs, fresh answers: fitted/planted β mean {fresh.mean():.3f} "
            f"(sd {fresh.std(ddof=1):.3f})"
        )
    print(
        f"β per unit of the utilities' spread net of estimation error: fitted/planted "
        f"{net_ratio.mean():.3f} (sd {net_ratio.std(ddof=1):.3f})"
    )


if __name__ == "__main__":
    main()
