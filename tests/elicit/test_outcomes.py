from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from elicit.errors import OutcomeSetError
from elicit.outcomes import builtin_sets, combine, load_outcomes


def test_starter_set_is_valid_and_varied():
    s = load_outcomes("starter")
    assert 60 <= len(s) <= 100
    categories = {o.attributes.get("category") for o in s}
    assert {
        "health",
        "wealth",
        "environment",
        "ai",
        "animals",
        "politics",
        "personal",
        "catastrophe",
        "science",
    } <= categories
    assert all(o.text.endswith((".", "!")) for o in s)
    assert "starter" in builtin_sets()


def test_yaml_plain_list_and_mapping(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("- {id: x, text: One.}\n- {id: y, text: Two., attributes: {n: 3}}\n")
    b = tmp_path / "b.yaml"
    b.write_text("name: mine\noutcomes:\n  - {id: x, text: One.}\n  - {id: y, text: Two.}\n")
    assert load_outcomes(a).ids == ["x", "y"]
    assert load_outcomes(a).outcomes[1].attributes == {"n": 3}
    assert load_outcomes(b).name == "mine"


def test_json_csv_parquet(tmp_path):
    j = tmp_path / "o.json"
    j.write_text(json.dumps({"outcomes": [{"id": "a", "text": "A."}, {"id": "b", "text": "B."}]}))
    c = tmp_path / "o.csv"
    c.write_text("id,text,category\na,First.,x\nb,Second.,y\n")
    p = tmp_path / "o.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["A.", "B."], "n": [1, 2]}), p)
    assert load_outcomes(j).ids == ["a", "b"]
    assert load_outcomes(c).outcomes[0].attributes == {"category": "x"}
    assert load_outcomes(p).outcomes[1].attributes == {"n": 2}


@pytest.mark.parametrize(
    "content, match",
    [
        (
            "- {id: a, text: One.}\n- {id: b, text: Two.}\n- {id: a, text: Three.}\n",
            r"duplicate id 'a' \(lines 1 and 3\)",
        ),
        ("- {id: a, text: One.}\n- {id: b, text: ''}\n", r"line 2: outcome 'b' has empty text"),
        ("- {id: a, text: One.}\n- {id: b, text: Two., colour: red}\n", r"line 2: unknown field"),
        ("[]\n", "the set is empty"),
        ("- {id: a, text: One.}\n", "at least two"),
        ("outcomes: [\n", "not valid YAML"),
        ("foo: 1\noutcomes: []\n", "unknown top-level"),
    ],
)
def test_yaml_errors_name_file_and_line(tmp_path, content, match):
    f = tmp_path / "bad.yaml"
    f.write_text(content)
    with pytest.raises(OutcomeSetError, match=match) as info:
        load_outcomes(f)
    assert "bad.yaml" in str(info.value)


def test_csv_errors_name_row(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("id,text\na,One.\na,Two.\n")
    with pytest.raises(OutcomeSetError, match=r"rows 2 and 3"):
        load_outcomes(f)
    g = tmp_path / "cols.csv"
    g.write_text("name,text\na,One.\n")
    with pytest.raises(OutcomeSetError, match="missing column"):
        load_outcomes(g)


def test_unknown_source_and_unreadable(tmp_path):
    with pytest.raises(OutcomeSetError, match="built-in sets"):
        load_outcomes("no-such-set")
    with pytest.raises(OutcomeSetError, match="file not found"):
        load_outcomes(tmp_path / "missing.yaml")
    bad = tmp_path / "bin.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(OutcomeSetError, match="cannot read Parquet"):
        load_outcomes(bad)


def test_combine_requires_unique_ids(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("- {id: x, text: One.}\n- {id: y, text: Two.}\n")
    b = tmp_path / "b.yaml"
    b.write_text("- {id: z, text: One.}\n- {id: y, text: Two.}\n")
    with pytest.raises(OutcomeSetError, match="'y' appears in both"):
        combine([load_outcomes(a), load_outcomes(b)])
