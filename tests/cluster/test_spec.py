from __future__ import annotations

import pytest

from cluster.errors import SpecError
from cluster.spec import RunSpec, json_schema, load_spec


def write(tmp_path, text):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def test_defaults_and_run_id_is_stable(tmp_path):
    spec = load_spec(write(tmp_path, "name: demo\n"))
    assert spec.models[0].name == "smollm2-135m" and spec.outcomes == ["starter"]
    assert spec.resolved_run_id() == load_spec(write(tmp_path, "name: demo\n")).resolved_run_id()
    assert spec.resolved_run_id().startswith("demo-")
    other = load_spec(write(tmp_path, "name: demo\nmode: {kind: sample}\n"))
    assert other.resolved_run_id() != spec.resolved_run_id()


def test_errors_name_file_line_field_value(tmp_path):
    path = write(
        tmp_path, "name: x\nmodels:\n  - name: m\n    batch_size: 0\nmode:\n  kind: sampel\n"
    )
    with pytest.raises(SpecError) as info:
        load_spec(path)
    msg = str(info.value)
    assert f"{path}:4: models.0.batch_size = 0" in msg
    assert f'{path}:6: mode.kind = "sampel"' in msg and "'logprob', 'sample' or 'reasoning'" in msg


def test_unknown_field_and_cross_field_rules(tmp_path):
    with pytest.raises(SpecError, match=r"spec.yaml:2: desing: unknown field"):
        load_spec(write(tmp_path, "name: x\ndesing: {}\n"))
    with pytest.raises(SpecError, match="needs pairs_file"):
        load_spec(write(tmp_path, "design: {kind: pairs}\n"))
    with pytest.raises(SpecError, match="base_url"):
        load_spec(write(tmp_path, "models: [{name: gpt, scorer: openai}]\n"))
    with pytest.raises(SpecError, match="unique"):
        load_spec(write(tmp_path, "models: [{name: a}, {name: a}]\n"))


def test_unreadable_files(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(write(tmp_path, "name: [\n"))
    with pytest.raises(SpecError, match="must be a mapping"):
        load_spec(write(tmp_path, "- 1\n"))


def test_json_schema_documents_fields():
    schema = json_schema()
    assert schema["properties"]["root"]["description"].startswith("Results root")
    assert "ModelConfig" in schema["$defs"]
    assert RunSpec().content()["mode"]["kind"] == "logprob"
