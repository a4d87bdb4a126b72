"""Bad input: one line on standard error, a non-zero exit, no traceback, the root untouched.

The fixed cases are those of ``benchmarks/bad_inputs.py`` (issue 12, item 7, and neighbours),
run in-process through the CLI's entry point; the benchmark runs the same cases through the
installed command. The property-based tests draw bad specs, outcome files and command-line
numbers with hypothesis and assert the same four things for every draw.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import string
import sys
import tempfile
import traceback
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster.cli.commands import main


def _cases_module():
    path = Path(__file__).parents[2] / "benchmarks" / "bad_inputs.py"
    spec = importlib.util.spec_from_file_location("bad_inputs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bad_inputs", module)
    spec.loader.exec_module(module)
    return module


BAD = _cases_module()


def invoke(argv: list[str], cwd: Path) -> tuple[int, str]:
    """Run the CLI's entry point in ``cwd``; returns (exit code, standard error). An exception
    that escapes ``main`` is printed as a traceback, as the installed command would."""
    err = io.StringIO()
    with (
        contextlib.chdir(cwd),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(err),
    ):
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # a traceback is what the assertions look for
            traceback.print_exc()
            code = 1
    return code, err.getvalue()


def assert_clean(case, folder: Path, root: str, code: int, stderr: str) -> None:
    outcome = BAD.judge(case, folder, root, code, stderr, 0.0)
    assert outcome.clean, f"{case.name}: exit {code}, stderr {stderr!r}"
    assert outcome.named, f"{case.name}: {case.expect!r} not named in {stderr!r}"
    assert outcome.untouched, f"{case.name}: wrote {sorted(p.name for p in folder.iterdir())}"


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


@pytest.mark.parametrize("case", BAD.CASES, ids=[c.name for c in BAD.CASES])
def test_bad_input_is_one_line_and_writes_nothing(case, tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    argv, root = BAD.materialise(case, folder)
    code, stderr = invoke(argv, folder)
    assert_clean(case, folder, root, code, stderr)


def test_the_installed_command_agrees_on_a_sample(tmp_path):
    """Three cases through the real executable (a subprocess), as the benchmark runs them all."""
    for name in ("empty spec file", "YAML syntax error", "preview -n -1"):
        case = next(c for c in BAD.CASES if c.name == name)
        outcome = BAD.run_case(case)
        assert outcome.clean and outcome.named and outcome.untouched, outcome


# --- property-based -----------------------------------------------------------------------------

PROPERTY = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
BASE = {"models": [{"name": "simulated"}], "design": {"kind": "full"}, "fit": {"bootstrap": 0}}
FIELDS = {
    "run_id", "name", "root", "outcomes", "models", "prompt", "mode", "design", "fit",
    "execution",
}  # fmt: skip

non_positive = st.integers(max_value=0)
not_finite = st.sampled_from([math.inf, -math.inf, math.nan])
text = st.text(string.ascii_letters + string.digits + " ._-", min_size=1, max_size=12)

# (path into the spec, a value that path must refuse)
bad_fields = st.one_of(
    st.tuples(st.just(("models", 0, "replicas")), non_positive | st.integers(min_value=10_001)),
    st.tuples(st.just(("models", 0, "noise")), not_finite | st.floats(max_value=0)),
    st.tuples(st.just(("models", 0, "position_bias")), not_finite),
    st.tuples(st.just(("models", 0, "batch_size")), non_positive | st.integers(min_value=4097)),
    st.tuples(st.just(("models", 0, "scorer")), text.filter(lambda t: t not in {"simulated", "hf", "vllm", "openai"})),
    st.tuples(st.just(("design", "per_round")), non_positive),
    st.tuples(st.just(("design", "budget")), non_positive),
    st.tuples(st.just(("design", "kind")), st.just("pairs")),  # without a pairs_file
    st.tuples(st.just(("fit", "bootstrap")), st.integers(max_value=-1) | st.integers(min_value=10_001)),
    st.tuples(st.just(("execution", "shard_size")), non_positive),
    st.tuples(st.just(("outcomes",)), st.just([]) | st.lists(text.map(lambda t: f"missing-{t}.yaml"), min_size=1, max_size=2)),
    st.tuples(st.just(("name",)), st.lists(text, min_size=1, max_size=2)),
    st.tuples(
        text.map(lambda t: (t.replace(" ", "_"),)).filter(lambda k: k[0] not in FIELDS),
        st.integers() | text,
    ),
)  # fmt: skip


def _set(data: dict, path: tuple, value) -> dict:
    data = json.loads(json.dumps(data))
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
    node[path[-1]] = value
    return data


def _check(argv: list[str], files: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory(prefix="vs-prop-") as tmp:
        folder = Path(tmp)
        case = BAD.Case("drawn", tuple(argv), files)
        argv, root = BAD.materialise(case, folder)
        code, stderr = invoke(argv, folder)
        assert_clean(case, folder, root, code, stderr)


@PROPERTY
@given(bad_fields)
def test_drawn_bad_specs(field):
    path, value = field
    data = _set({**BASE, "root": "R"}, path, value)
    body = yaml.safe_dump(data, allow_unicode=True).replace("root: R\n", "")
    _check(["run", "spec.yaml"], {"spec.yaml": b"root: R\n" + body.encode()})


@PROPERTY
@given(st.binary(max_size=200), st.binary(max_size=200))
def test_drawn_spec_bytes_that_are_not_utf8(before, after):
    _check(["run", "spec.yaml"], {"spec.yaml": before + b"\xff\xfe" + after})


bad_ids = st.one_of(
    st.booleans(),
    st.none(),
    st.lists(text, max_size=2),
    st.dictionaries(text, text, max_size=1),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f)),
)
cell = st.text(string.ascii_letters + string.digits + " .-", min_size=1, max_size=10)


@st.composite
def bad_outcome_files(draw) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["yaml-id", "csv-ragged", "csv-attributes", "bytes"]))
    if kind == "yaml-id":
        good = [{"id": f"o{i}", "text": f"Outcome {i}."} for i in range(draw(st.integers(1, 4)))]
        bad = {"id": draw(bad_ids), "text": draw(cell)}
        rows = [*good]
        rows.insert(draw(st.integers(0, len(good))), bad)
        return "o.yaml", yaml.safe_dump(rows).encode()
    if kind == "csv-ragged":
        rows = [f"o{i},{draw(cell)}" for i in range(draw(st.integers(1, 4)))]
        extra = draw(st.lists(cell, min_size=1, max_size=3))
        short = draw(st.booleans())
        ragged = f"x{len(rows)}" if short else ",".join([f"x{len(rows)}", *extra, "t"])
        rows.insert(draw(st.integers(0, len(rows))), ragged)
        return "o.csv", ("id,text\n" + "\n".join(rows) + "\n").encode()
    if kind == "csv-attributes":

        def not_an_object(t: str) -> bool:
            try:
                return not isinstance(json.loads(t), dict)
            except ValueError:
                return True

        bad = draw(
            st.text(string.ascii_letters + string.digits + "[]{}:1 ", min_size=1, max_size=12)
            .filter(lambda t: t.strip() != "")
            .filter(not_an_object)
        )
        return "o.csv", f'id,text,attributes\na,A.,{{}}\nb,B.,"{bad}"\n'.encode()
    return "o.yaml", draw(st.binary(max_size=100)) + b"\xff" + draw(st.binary(max_size=100))


@PROPERTY
@given(bad_outcome_files())
def test_drawn_bad_outcome_files(drawn):
    name, data = drawn
    argv = ["run", "--model", "simulated", "--design", "full", "--outcomes", name]
    _check([*argv, "--root", "{root}"], {name: data})


def _not_an_int(t: str) -> bool:
    try:
        int(t)
    except ValueError:
        return True
    return False


bad_numbers = st.one_of(
    st.tuples(st.just(["preview", "--model", "simulated", "-n"]), non_positive),
    st.tuples(st.just(["sql", "SELECT 1", "--root", "{root}", "--limit"]), st.integers(max_value=-1)),
    st.tuples(st.just(["sql", "SELECT 1", "--root", "{root}", "--timeout"]), st.floats(max_value=0, allow_nan=False)),
    st.tuples(st.just(["run", "--model", "simulated", "--root", "{root}", "--replicas"]), non_positive),
    st.tuples(st.just(["run", "--model", "simulated", "--root", "{root}", "--budget"]), non_positive),
    st.tuples(st.just(["run", "--model", "simulated", "--root", "{root}", "--per-round"]), non_positive),
    st.tuples(st.just(["run", "--model", "simulated", "--root", "{root}", "--shard-size"]), non_positive),
    st.tuples(st.just(["run", "--model", "simulated", "--root", "{root}", "--batch-size"]), non_positive | st.integers(min_value=4097)),
    st.tuples(st.just(["run", "--model", "simulated", "--root", "{root}", "--budget"]), text.filter(_not_an_int)),
)  # fmt: skip


@PROPERTY
@given(bad_numbers)
def test_drawn_bad_command_line_numbers(drawn):
    argv, number = drawn
    _check([*argv, str(number)], {})


def test_sql_timeout_and_memory_cap_from_the_command_line(tmp_path):
    """`valuescope sql --timeout S --memory-limit X` stop a runaway query in one line."""
    root = tmp_path / "results"
    root.mkdir()
    for args, expect in (
        (["SELECT count(*) FROM range(100000000000)", "--timeout", "0.5"], "timeout of 0.5 s"),
        (["SELECT list(i) FROM range(200000000) t(i)", "--memory-limit", "100MB"], "memory"),
        (["SELECT 1", "--memory-limit", "lots"], "'lots'"),
        (["SELECT 1", "--timeout", "0"], "--timeout"),
    ):
        code, stderr = invoke(["sql", *args, "--root", str(root)], tmp_path)
        assert code != 0 and expect in stderr, (args, stderr)
        assert stderr.strip().count("\n") == 0 and "Traceback" not in stderr
    code, _ = invoke(["sql", "SELECT 42", "--root", str(root), "--timeout", "30"], tmp_path)
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"] and not any(root.iterdir())


def test_models_are_looked_for_only_where_the_replicas_run(monkeypatch):
    """A local run refuses an unknown model at once; a run on a cluster leaves it to the
    cluster, whose workers may have folders, caches and tokens the driver lacks."""
    from cluster.errors import SpecError
    from cluster.pipeline.preflight import preflight
    from cluster.spec import parse_spec

    data = {"models": [{"name": "no-such-org/no-such-model-xyz"}]}
    with pytest.raises(SpecError, match="no-such-model-xyz is not in the local Hugging Face"):
        preflight(parse_spec(data))
    preflight(parse_spec({**data, "execution": {"ray_address": "ray://head:10001"}}))
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    preflight(parse_spec(data))
