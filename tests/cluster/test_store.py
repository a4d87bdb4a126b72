"""The run store: one catalog connection per command, reopened only when something new landed;
typed readers agree with the fold SQL of fit/data.py; damaged files are named in one line."""

import numpy as np
import pytest

from cluster.pipeline.run import run
from cluster.spec import parse_spec
from cluster.store import HOLDOUT_ROUND, RunStore
from storage.errors import StorageError


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("store") / "r")
    spec = parse_spec(
        {
            "name": "store",
            "root": root,
            "outcomes": ["starter"],
            "models": [{"name": "simulated", "seed": 5, "noise": 0.3}],
            "design": {"kind": "full", "holdout": {"size": 40}},
            "execution": {"progress": "none"},
        }
    )
    run(spec)
    return root, spec.resolved_run_id()


def test_readers_share_one_connection(stored):
    root, run_id = stored
    with RunStore(root) as store:
        models = store.models(run_id)
        assert models == ["simulated"]
        assert store.rounds(run_id, "simulated")[0] == HOLDOUT_ROUND
        fit = store.latest_fit(run_id, "simulated")
        assert fit["fit_id"] and store.utilities(run_id, "simulated")
        assert len(store.outcome_ids(run_id)) == len(store.outcomes(run_id))
        assert store.opened == 1
        store.write_analysis_table("demo", run_id, run_id, "simulated", "result", [{"x": 1.5}])
        assert store.analysis_rows("analysis_demo", run_id, "simulated")[0]["x"] == 1.5
        assert store.opened == 2  # the write marked the connection stale; one reopen


def test_pair_probs_are_oriented_lo_to_hi_and_match_the_truth(stored):
    root, run_id = stored
    with RunStore(root) as store:
        pp = store.pair_probs(run_id, "simulated")
        truth = {
            r["outcome_id"]: r["true_utility"]
            for r in store.utility_rows(
                run_id, "simulated", store.latest_fit(run_id, "simulated")["fit_id"]
            )
        }
    index = {o: k for k, o in enumerate(store.outcome_ids(run_id))}
    assert all(index[a] < index[b] for a, b in zip(pp.first, pp.second, strict=True))
    # P(first ≻ second) is above ½ exactly when the first has the higher true utility
    higher = np.array([truth[a] > truth[b] for a, b in zip(pp.first, pp.second, strict=True)])
    agree = np.mean((pp.p > 0.5) == higher)
    assert agree > 0.9 and pp.n.min() >= 2  # both orders behind every probability


def test_a_truncated_part_is_named_in_one_line(stored, tmp_path):
    import shutil
    from pathlib import Path

    root, run_id = stored
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    part = sorted(Path(copy, "comparisons").rglob("part-*.parquet"))[0]
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    with pytest.raises(StorageError) as info, RunStore(str(copy)) as store:
        store.fits(run_id)
    message = str(info.value)
    assert "\n" not in message and part.name in message
