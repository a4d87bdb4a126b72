"""What the CLI prints: round reports from the run loop, run names, SQL tables that fit the
terminal, `show` saying which fit it shows, ranked tables within 80 columns."""

from __future__ import annotations

import re

import pyarrow as pa
import pytest
from click.testing import CliRunner
from rich.cells import cell_len

from cluster.cli import cli
from cluster.cli.display import layout_columns, table_lines
from cluster.cli.live import round_line
from cluster.cli.options import build_spec
from cluster.pipeline.events import RoundFitted
from cluster.pipeline.fitting import refit
from cluster.pipeline.run import run
from cluster.reports.format import NULL
from cluster.spec import RunSpec

SIM = {"name": "simulated", "seed": 3, "noise": 0.5, "label_noise": 0.2}


def sim_spec(root: str, **kw) -> RunSpec:
    data = {
        "name": "out",
        "root": root,
        "outcomes": ["starter"],
        "models": [SIM],
        "design": {"kind": "active", "per_round": 300, "holdout": {"size": 200}},
        "fit": {"bootstrap": 0},
        "execution": {"shard_size": 1000, "progress": "none"},
    }
    data.update(kw)
    return RunSpec.model_validate(data)


def test_each_active_round_reports_its_ranking(root, ray_local):
    events = []
    [result] = run(sim_spec(root), listener=events.append)
    reports = [e for e in events if isinstance(e, RoundFitted)]
    # round 1 (the 80-pair start graph), 300 pairs a round, then the rest of the 1011 budget
    assert [e.round for e in reports] == [1, 2, 3, 4, 5]
    assert [e.pairs for e in reports] == [80, 380, 680, 980, 1011]
    assert result.queried_pairs == 1011
    assert all(len(e.top) == 5 and len(e.bottom) == 5 for e in reports)
    assert not set(reports[-1].top) & set(reports[-1].bottom)
    accs = [e.holdout_accuracy for e in reports]
    assert all(a is not None and 0.5 < a <= 1 for a in accs)
    # the last report is the final fit's ranking without its position term: same ends
    final = result.utilities.sort_by([("mu", "descending")]).column("outcome_id").to_pylist()
    assert len(set(reports[-1].top) & set(final[:5])) >= 3
    # a rerun of the finished run asks nothing and reports the same rounds again
    again = []
    run(sim_spec(root), listener=again.append)
    assert [e.round for e in again if isinstance(e, RoundFitted)] == [1, 2, 3, 4, 5]


def test_round_line_fits_the_width():
    event = RoundFitted(
        "simulated", 2, 1380, 0.8734, ["science-08", "politics-02", "x-1"], ["a-1", "wealth-04"]
    )
    assert round_line(event, 200) == (
        "simulated round 2: 1,380 pairs, held-out 87%; top science-08, politics-02, x-1; "
        "bottom a-1, wealth-04"
    )
    narrow = round_line(event, 80)
    assert cell_len(narrow) <= 80 and "top science-08" in narrow and "bottom wealth-04" in narrow
    assert cell_len(round_line(event, 30)) <= 30


@pytest.mark.parametrize(
    ("flags", "name"),
    [
        ({}, "quickstart"),
        ({"root": "elsewhere", "budget": 40}, "quickstart"),
        ({"models": ("simulated",)}, "simulated-starter"),
        ({"models": ("simulated",), "outcome_sets": ("data/my.yaml",)}, "simulated-my"),
        ({"models": ("Qwen/Qwen2.5-7B-Instruct",)}, "qwen2.5-7b-instruct-starter"),
        ({"outcome_sets": ("my.csv",)}, "smollm2-135m-my"),
        ({"models": ("simulated",), "name": "mine"}, "mine"),
    ],
)
def test_runs_without_a_spec_are_named_from_model_and_outcomes(flags, name):
    spec = build_spec(None, **flags)
    assert spec.name == name
    assert spec.resolved_run_id().startswith(name + "-")


def test_sql_table_fits_the_terminal():
    wide = pa.table(
        {
            "run_id": ["quickstart-abc"] * 5,
            **{f"col{k}": [k * 1.5] * 5 for k in range(12)},
            "text": ["An outcome text far longer than any cell may be shown in a table"] * 5,
            "n": [1, 22, 333, 4444, None],
        }
    )
    lines = table_lines(wide, width=80, limit=3)
    assert max(cell_len(x) for x in lines) <= 80
    header = lines[1]
    assert "run_id" in header and header.rstrip(" │").endswith("n") and " … " in header
    assert table_lines(wide, width=80, limit=0)[8].endswith(f" {NULL} │")  # the missing `n`
    assert "5 rows (3 shown; --limit N, or --format csv for all)" in lines
    assert lines[-1].startswith("15 columns (") and "elided: col" in lines[-1]
    assert re.search(r"│\s+333 │$", lines[6])  # numbers right-aligned
    one = table_lines(wide.select(["text"]), width=40, limit=0)
    assert max(cell_len(x) for x in one) <= 40 and "…" in one[4] and one[-1] == "5 rows"
    # every column fits: nothing elided, nothing cut
    small = table_lines(wide.select(["run_id", "n"]), width=80, limit=0)
    assert "…" not in "".join(small) and small[-1] == "5 rows"
    assert layout_columns([10, 10, 10], 100) == ([0, 1, 2], [10, 10, 10])


def test_sql_limit_must_not_be_negative(root):
    result = CliRunner().invoke(cli, ["sql", "SELECT 1", "--root", root, "--limit", "-1"])
    assert result.exit_code == 2 and "-1 is not in the range x>=0" in result.output


def test_show_says_which_fit_and_fits_80_columns(root, ray_local):
    spec = sim_spec(root, run_id="fits", design={"kind": "full", "holdout": {"size": 200}})
    run(spec)
    refit(root, "fits", estimator="bt", position_bias=False)  # the latest fit is now `bt`
    invoke = CliRunner().invoke
    own = invoke(cli, ["show", "fits", "--root", root])
    assert own.exit_code == 0, own.output
    assert "utilities from fit thurstonian-pb (the run's own fit)" in own.output
    assert "other fits: bt (valuescope show fits --fit ID)" in own.output
    assert "thurstonian fit:" in own.output
    assert max(cell_len(x) for x in own.output.splitlines()) <= 80
    rows = [x for x in own.output.splitlines() if x.startswith("│")]
    assert len(rows) == 21 and all(x.endswith("… │") or "…" in x for x in rows[:10])
    by_id = invoke(cli, ["show", "fits", "--root", root, "--fit", "bt"])
    assert "utilities from fit bt (asked for)" in by_id.output and "bt fit:" in by_id.output
    by_est = invoke(cli, ["show", "fits", "--root", root, "--estimator", "bt"])
    assert "utilities from fit bt (the latest bt fit)" in by_est.output
    missing = invoke(cli, ["show", "fits", "--root", root, "--fit", "nope"])
    assert missing.exit_code == 1 and "stored fits: bt, thurstonian-pb" in str(missing.exception)
    both = invoke(cli, ["show", "fits", "--root", root, "--fit", "bt", "--estimator", "bt"])
    assert both.exit_code == 2
    wide = invoke(cli, ["show", "fits", "--root", root, "--wide"])
    full = [x for x in wide.output.splitlines() if "science-08" in x]
    assert "Researchers find a way to reverse ageing in human cells" in full[0]
    assert max(cell_len(x) for x in wide.output.splitlines()) > 80
    refit_out = invoke(cli, ["fit", "fits", "--root", root, "--estimator", "bt"])
    assert "utilities from fit bt-pb (this refit)" in refit_out.output


def test_tie_interval_keeps_its_width_visible():
    from cluster.cli.show import _at_tie_text

    wide = {"first_at_tie": 0.736, "first_at_tie_lo": 0.72, "first_at_tie_hi": 0.75}
    assert _at_tie_text(wide) == "first-listed wins 74% of ties [72%, 75%]"
    narrow = {"first_at_tie": 0.8884, "first_at_tie_lo": 0.8861, "first_at_tie_hi": 0.8907}
    assert _at_tie_text(narrow) == "first-listed wins 88.8% of ties [88.6%, 89.1%]"
    assert _at_tie_text({"first_at_tie": 0.5}) == "first-listed wins 50% of ties"
    assert _at_tie_text({}) == "ties not modelled"
