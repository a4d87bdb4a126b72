"""Seed spread and a shuffled-vector control for ``valuescope probe`` on a probed run.

Reads the cached hidden states of a run that ``valuescope probe`` has already extracted (the
model is not loaded) and, for each layer given, refits both probes over ``--seeds`` fold
splits, once on the real vectors and once with the vectors shuffled between outcomes (any link
between an outcome's representation and its utility is broken, everything else is kept).
Prints mean ± sd over the seeds of the held-out R² of μ, the pair accuracy with both outcomes
held out, and the accuracy on pairs with one seen outcome.

    .venv/bin/valuescope probe smollm2-281023ab --root /tmp/probebench/results --every 2
    .venv/bin/python benchmarks/probes_control.py smollm2-281023ab --root /tmp/probebench/results
"""

from __future__ import annotations

import argparse

import numpy as np

from cluster.experiments.io import pair_probs, stored_outcomes, utilities
from elicit.hidden import cached_layers, read_layer
from fit.probes import LayerProbe, probe_layer
from storage import Root, RunLayout


def _stats(probes: list[LayerProbe]) -> str:
    def ms(values: list[float]) -> str:
        return f"{np.mean(values):+.3f} ± {np.std(values, ddof=1):.3f}"

    r2 = [p.ridge.r2_mean for p in probes]
    acc = [p.pairs.accuracy for p in probes if p.pairs]
    one = [p.pairs.accuracy_one_seen for p in probes if p.pairs]
    return f"R² {ms(r2)}  acc {ms(acc)}  acc(one seen) {ms(one)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_id")
    parser.add_argument("--root", default="results")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--context", default="prompt")
    parser.add_argument("--layers", default="2,16,28,30")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()

    root = Root(args.root)
    ids = stored_outcomes(root, args.run_id).ids
    mu_by_id = utilities(root, args.run_id, args.model)
    keep = [i for i in ids if i in mu_by_id]
    mu = np.array([mu_by_id[i] for i in keep])
    index = {oid: k for k, oid in enumerate(keep)}
    pp = pair_probs(root, args.run_id, args.model)
    use = [
        k
        for k, (a, b) in enumerate(zip(pp.first, pp.second, strict=True))
        if a in index and b in index
    ]
    first = np.array([index[pp.first[k]] for k in use])
    second = np.array([index[pp.second[k]] for k in use])
    p = pp.p[use]
    files = cached_layers(root, RunLayout(root, args.run_id), args.model, args.context)
    rng = np.random.default_rng(123)
    print(f"{args.run_id} / {args.model} / {args.context}: {len(keep)} outcomes, {len(p)} pairs")
    for layer in (int(x) for x in args.layers.split(",")):
        if layer not in files:
            raise SystemExit(f"layer {layer} is not cached; run `valuescope probe` with it first")
        x = read_layer(root, files[layer], keep)
        assert x is not None
        real, shuffled = [], []
        for seed in range(args.seeds):
            kw = {"first": first, "second": second, "p": p, "folds": args.folds, "seed": seed}
            real.append(probe_layer(layer, x, mu, **kw))  # type: ignore[arg-type]
            perm = rng.permutation(len(keep))
            shuffled.append(probe_layer(layer, x[perm], mu, **kw))  # type: ignore[arg-type]
        print(f"layer {layer:>2} real     {_stats(real)}")
        print(f"layer {layer:>2} shuffled {_stats(shuffled)}")


if __name__ == "__main__":
    main()
