"""The façade ``cluster`` mirrors the CLI, imports nothing heavy, and runs a spec end to end."""

import subprocess
import sys

import cluster


def test_every_api_name_resolves():
    for name in cluster.__all__:
        assert callable(getattr(cluster, name)), name


def test_import_is_light():
    code = (
        "import sys, cluster\n"
        "heavy = [m for m in ('ray', 'torch', 'transformers', 'vllm', 'duckdb') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_run_show_refit_through_the_facade(tmp_path):
    spec = cluster.parse_spec(
        {
            "name": "api",
            "root": str(tmp_path / "r"),
            "outcomes": ["starter"],
            "models": [{"name": "simulated", "seed": 3}],
            "design": {"kind": "full"},
            "execution": {"progress": "none"},
        }
    )
    runs = cluster.run(spec)
    run_id = spec.resolved_run_id()
    assert runs[0].fit["n_pairs"] > 0
    shown = cluster.show(spec.root, run_id)
    assert set(shown) == {"simulated"} and shown["simulated"]["utilities"]
    rows = cluster.refit(spec.root, run_id, estimator="bt", position_bias=False)
    assert rows[0]["estimator"] == "bt"
    with cluster.RunStore(spec.root) as store:
        assert {f["estimator"] for f in store.fits(run_id)} == {"thurstonian", "bt"}
        assert store.opened == 1
