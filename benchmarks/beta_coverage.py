"""Does the position-bias interval cover the planted β? Coverage over seeds, through the real
pipeline (``valuescope run``: held-out round, start graph, active rounds, final fit).

The prompt-reading simulated agent has utilities μ ~ N(0, 1) (seeded), noise σ, label noise and
a position bias β toward the first-listed option. The fit reports β on the scale of its
standardised utilities (sd 1 over outcomes), so the planted value it should recover is
β / sd(μ_true) (the sd of the drawn utilities, not 1).

    python benchmarks/beta_coverage.py --seeds 20 --design active --label-noise 0.5
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np


def one(seed: int, args: argparse.Namespace, root: str) -> dict[str, float]:
    from cluster.pipeline.run import run
    from cluster.spec import parse_spec
    from cluster.store import RunStore

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
        rows = store.utility_rows(spec.resolved_run_id(), "simulated", fit["fit_id"])
    truth = np.array([r["true_utility"] for r in rows])
    se = np.array([(r["mu_hi"] - r["mu_lo"]) / 3.92 for r in rows])
    planted = args.beta / truth.std()
    # the spread of the estimates net of their error: what sd 1 would be without estimation noise
    net = np.sqrt(max(1.0 - float(np.mean(se**2)), 1e-9))
    return {
        "beta": fit["position_bias"],
        "lo": fit["position_bias_lo"],
        "hi": fit["position_bias_hi"],
        "planted": planted,
        "covered": float(fit["position_bias_lo"] <= planted <= fit["position_bias_hi"]),
        "net": fit["position_bias"] / net,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--design", choices=["active", "full"], default="active")
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--label-noise", type=float, default=0.5)
    parser.add_argument("--per-round", type=int, default=200)
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
    print(
        f"β per unit of the utilities' spread net of estimation error: fitted/planted "
        f"{net_ratio.mean():.3f} (sd {net_ratio.std(ddof=1):.3f})"
    )


if __name__ == "__main__":
    main()
