from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


# --- bad input: one line naming file, row/line, field and value (issue 12, item 7) ----------------


def _one_line_error(path, *needles):
    with pytest.raises(OutcomeSetError) as info:
        load_outcomes(path)
    message = str(info.value)
    assert "\n" not in message and path.name in message, message
    for needle in needles:
        assert needle in message, message
    return message


@pytest.mark.parametrize(
    "cell, needles",
    [
        ('"{bad json"', ["row 3", "field 'attributes'", "'{bad json'", "not valid JSON"]),
        ('"[1, 2]"', ["row 3", "field 'attributes'", "'[1, 2]'", "list, not a JSON object"]),
        ('"42"', ["row 3", "'42'", "int, not a JSON object"]),
    ],
)
def test_csv_attributes_cell_that_is_not_an_object(tmp_path, cell, needles):
    f = tmp_path / "attrs.csv"
    f.write_text(f'id,text,attributes\na,One.,"{{""k"": 1}}"\nb,Two.,{cell}\n')
    _one_line_error(f, *needles)


def test_csv_attributes_cell_that_is_an_object_is_merged(tmp_path):
    f = tmp_path / "attrs.csv"
    f.write_text('id,text,attributes,n\na,One.,"{""k"": 1}",2\nb,Two.,,\n')
    s = load_outcomes(f)
    assert s.outcomes[0].attributes == {"k": 1, "n": "2"}
    assert s.outcomes[1].attributes == {}


def test_parquet_attributes_column_is_checked_per_row(tmp_path):
    bad = tmp_path / "bad.parquet"
    pq.write_table(
        pa.table({"id": ["a", "b"], "text": ["A.", "B."], "attributes": ['{"k": 1}', "{x"]}), bad
    )
    _one_line_error(bad, "row 2", "field 'attributes'", "'{x'", "not valid JSON")
    listed = tmp_path / "list.parquet"
    pq.write_table(
        pa.table({"id": ["a", "b"], "text": ["A.", "B."], "attributes": [[1], [2, 3]]}), listed
    )
    _one_line_error(listed, "row 1", "field 'attributes'", "[1]", "list, not a JSON object")
    mapped = tmp_path / "map.parquet"
    attrs = pa.array([[("k", "x")], [("k", "y")]], type=pa.map_(pa.string(), pa.string()))
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["A.", "B."], "attributes": attrs}), mapped)
    assert [o.attributes for o in load_outcomes(mapped)] == [{"k": "x"}, {"k": "y"}]


@pytest.mark.parametrize(
    "record, needles",
    [
        ("{id: true, text: Two.}", ["line 2", "field 'id'", "true is a bool", "quote it"]),
        ("{id: [x], text: Two.}", ["line 2", "field 'id'", '["x"] is a list', "quote it"]),
        ("{id: 1.5, text: Two.}", ["line 2", "field 'id'", "1.5 is a float"]),
        ("{id: b, text: 5}", ["line 2", "field 'text'", "int (5)"]),
    ],
)
def test_ids_and_texts_of_the_wrong_type_are_not_coerced(tmp_path, record, needles):
    f = tmp_path / "ids.yaml"
    f.write_text(f"- {{id: a, text: One.}}\n- {record}\n")
    _one_line_error(f, *needles)


def test_integer_ids_are_kept_as_text(tmp_path):
    f = tmp_path / "ints.yaml"
    f.write_text("- {id: 1, text: One.}\n- {id: 2, text: Two.}\n")
    assert load_outcomes(f).ids == ["1", "2"]
    p = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"id": [True, False], "text": ["A.", "B."]}), p)
    _one_line_error(p, "row 1", "field 'id'", "true is a bool")


@pytest.mark.parametrize(
    "content, needles",
    [
        ("id,text\na,One.,extra\nb,Two.\n", ["row 2", "3 fields but the header has 2"]),
        ("id,text,category\na,One.,x\nb,Two.\n", ["row 3", "2 fields but the header has 3"]),
    ],
)
def test_ragged_csv_row_is_refused(tmp_path, content, needles):
    f = tmp_path / "ragged.csv"
    f.write_text(content)
    _one_line_error(f, *needles)


# --- the paper's layout: {category: [texts]} (issue 13, item 6) ----------------------------------


PAPER = {
    "health": ["You are cured of a chronic illness.", "A new vaccine saves 1000 lives."],
    "wealth": ["You receive $1,000.", "You receive $1,000,000."],
    "AI & robots": ["An AI system gains access to more compute."],
}


def test_category_map_json_loads_with_stable_ids_and_category(tmp_path):
    f = tmp_path / "options.json"
    f.write_text(json.dumps(PAPER, indent=2))
    s = load_outcomes(f)
    assert len(s) == 5 and s.name == "options"
    assert [o.attributes for o in s] == [{"category": c} for c in PAPER for _ in PAPER[c]]
    assert s.texts == [t for c in PAPER for t in PAPER[c]]
    assert all(re.fullmatch(r"(health|wealth|ai-robots)-[0-9a-f]{8}", i) for i in s.ids), s.ids
    assert len(set(s.ids)) == 5
    # Same ids on every load and whatever the order of categories and texts (and spacing).
    shuffled = {c: list(reversed(PAPER[c])) for c in reversed(list(PAPER))}
    shuffled["wealth"][0] = "  You receive   $1,000,000. "
    g = tmp_path / "shuffled.json"
    g.write_text(json.dumps(shuffled))
    by_text = {o.text: o.id for o in load_outcomes(g)}
    assert by_text == {o.text: o.id for o in load_outcomes(f)}


def test_category_map_yaml_and_its_errors(tmp_path):
    y = tmp_path / "cats.yaml"
    y.write_text("health:\n  - Cured.\n  - Vaccinated.\nwealth:\n  - Rich.\n")
    s = load_outcomes(y)
    assert [o.attributes["category"] for o in s] == ["health", "health", "wealth"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("health:\n  - Cured.\n  - 7\n")
    _one_line_error(bad, "line 3", "category 'health' holds 7", "texts")
    twice = tmp_path / "twice.json"
    twice.write_text('{\n "health": [\n  "Cured.",\n  "Cured."\n ]\n}\n')
    _one_line_error(twice, "lines 3 and 4", "same text twice", "'Cured.'")
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps({"name": "x", "health": ["Cured.", "Rich."]}))
    _one_line_error(mixed, "unknown top-level", "{category: [texts]}")


# --- property: any file gives a set or one clean line, never a traceback -------------------------

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=' ab,"{}[]:\n\\', max_size=8),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.one_of(st.text("ab", max_size=2), st.integers(0, 2), st.booleans()),
            inner,
            max_size=3,
        ),
    ),
    max_leaves=8,
)
_RECORDS = st.lists(
    st.fixed_dictionaries(
        {"id": _VALUES, "text": _VALUES},
        optional={"attributes": _VALUES, "extra": _VALUES},
    ),
    max_size=4,
)
_TREES = st.one_of(
    _VALUES,
    _RECORDS,
    st.fixed_dictionaries({"outcomes": _RECORDS}, optional={"name": _VALUES}),
    st.dictionaries(st.text("abc &", min_size=1, max_size=4), st.lists(_VALUES, max_size=3)),
)


def _loads_or_one_line(path):
    try:
        s = load_outcomes(path)
    except OutcomeSetError as exc:
        message = str(exc)
        assert "\n" not in message and path.name in message, message
        return
    assert len(s) >= 2 and len(set(s.ids)) == len(s)
    for o in s:
        assert isinstance(o.id, str) and o.id and isinstance(o.text, str) and o.text.strip()
        assert isinstance(o.attributes, dict)
        assert all(isinstance(k, str) for k in o.attributes), o.attributes


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tree=_TREES, as_json=st.booleans())
def test_any_yaml_or_json_file_loads_or_fails_in_one_line(tmp_path, tree, as_json):
    if as_json:
        f = tmp_path / "h.json"
        f.write_text(json.dumps(tree, default=str))
    else:
        f = tmp_path / "h.yaml"
        f.write_text(yaml.safe_dump(tree, allow_unicode=True))
    _loads_or_one_line(f)


_CELLS = st.one_of(
    st.text(alphabet=' ab,"{}[]:\n1', max_size=10),
    st.sampled_from(['{"k": 1}', "[1, 2]", "{bad", "null", "true", "3", '{"": null}']),
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    header=st.lists(st.sampled_from(["id", "text", "attributes", "n", ""]), max_size=5),
    rows=st.lists(st.lists(_CELLS, max_size=6), max_size=4),
    parquet=st.booleans(),
)
def test_any_table_file_loads_or_fails_in_one_line(tmp_path, header, rows, parquet):
    if parquet:
        columns = list(dict.fromkeys(h for h in header if h))
        width = len(columns)
        body = [(r + [""] * width)[:width] for r in rows]
        f = tmp_path / "h.parquet"
        pq.write_table(pa.table({c: [r[i] for r in body] for i, c in enumerate(columns)}), f)
    else:
        import csv
        import io

        buffer = io.StringIO()
        csv.writer(buffer).writerows([header, *rows])
        f = tmp_path / "h.csv"
        f.write_text(buffer.getvalue())
    _loads_or_one_line(f)


def test_attribute_names_must_be_texts(tmp_path):
    f = tmp_path / "keys.yaml"
    f.write_text("- {id: a, text: One., attributes: {1: x}}\n- {id: b, text: Two.}\n")
    _one_line_error(f, "line 1", "attribute name 1")
    g = tmp_path / "unnamed.csv"
    g.write_text("id,text,\na,One.,x\nb,Two.,\n")
    _one_line_error(g, "row 2", 'attribute name ""', "name the column")
