"""`valuescope analyze all` and `valuescope report` on two simulated agents."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from browser import CHROMIUM, check_page
from click.testing import CliRunner

from cluster.cli import cli
from cluster.experiments.analyze import ANALYSES
from cluster.spec import RunSpec
from storage.catalog import query

EXE = os.path.join(os.path.dirname(sys.executable), "valuescope")

SPEC = {
    "name": "rep",
    "models": [
        {"name": "agent-a", "scorer": "simulated", "seed": 2, "noise": 0.4},
        {"name": "agent-b", "scorer": "simulated", "seed": 9, "noise": 0.4},
    ],
    "design": {"kind": "active", "budget": 120, "holdout": {"size": 30}},
    "fit": {"bootstrap": 0},
    "execution": {"progress": "none"},
}
SMALL = [
    "--n-outcomes", "6", "--n-lotteries", "5", "--n-base", "4", "--n-events", "3",
    "--n-processes", "3", "--n-questions", "4", "--n-entities", "2", "--n-policies", "6",
    "--personas", "2", "--delays", "1,12,60", "--n-amounts", "8", "--n-reversals", "6",
]  # fmt: skip


@pytest.fixture(scope="module")
def analysed(tmp_path_factory, ray_local):
    """A root where every analysis has run on one base run; returns (root, base run id)."""
    folder = tmp_path_factory.mktemp("report")
    root = str(folder / "results")
    spec_file = folder / "spec.yaml"
    spec_file.write_text(json.dumps({**SPEC, "root": root}))
    result = CliRunner().invoke(
        cli, ["analyze", "all", str(spec_file), *SMALL], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return root, RunSpec.model_validate({**SPEC, "root": root}).resolved_run_id()


def test_all_analyses_write_results_and_figures(analysed):
    root, base = analysed
    for analysis in ANALYSES:
        view = "analysis_" + analysis.replace("-", "_")
        rows = query(root, f"SELECT * FROM {view}").to_pylist()
        assert sorted(r["model"] for r in rows) == ["agent-a", "agent-b"], analysis
        assert all(r["base_run_id"] == base for r in rows)
        pngs = list(Path(root, "figures").rglob(f"{analysis}.png"))
        assert pngs and all(p.stat().st_size > 5000 for p in pngs), analysis
    answers = query(root, "SELECT * FROM analysis_maximisation_answers").to_pylist()
    assert answers and all(a["chosen"] is not None for a in answers)  # simulated: exact texts


def test_report_embeds_every_analysis_and_figure(analysed, tmp_path):
    root, base = analysed
    out = tmp_path / "page.html"
    result = CliRunner().invoke(cli, ["report", base, "--root", root, "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert f"<h1>valuescope report: {base}</h1>" in page
    for analysis in ANALYSES:
        assert f"<h3>{analysis}</h3>" in page
    assert page.count("Ranked utilities") == 2 and "Position bias" in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) >= len(ANALYSES)
    assert f"{base}-time-discounting-" in page  # derived runs are listed
    assert 'src="http' not in page and "<script" not in page  # self-contained


def test_report_default_path_and_missing_run(analysed):
    root, base = analysed
    ok = subprocess.run(
        [EXE, "report", base, "--root", root], capture_output=True, text=True, timeout=120
    )
    assert ok.returncode == 0, ok.stderr
    assert Path(root, "reports", f"{base}.html").stat().st_size > 10_000
    missing = subprocess.run(
        [EXE, "report", "nothing-here", "--root", root], capture_output=True, text=True, timeout=120
    )
    assert missing.returncode == 1 and "run 'nothing-here' not found" in missing.stderr


def _non_blank(png: bytes) -> bool:
    """A screenshot with something drawn on it: not one flat colour."""
    import io

    import matplotlib.image as mpimg

    pixels = mpimg.imread(io.BytesIO(png))[..., :3]
    dark = (pixels.mean(axis=-1) < 0.6).mean()  # text, axes, markers
    return float(pixels.std()) > 0.05 and dark > 0.005


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (scripts/test installs it)")
def test_report_reads_in_a_real_browser(analysed, tmp_path):
    """The page loads in headless Chromium with no console error, every image decodes, the page
    itself never scrolls sideways (wide tables scroll in their own box), and a screenshot of it
    is not blank."""
    root, base = analysed
    out = tmp_path / "page.html"
    assert (
        CliRunner().invoke(cli, ["report", base, "--root", root, "--out", str(out)]).exit_code == 0
    )
    page = check_page(out)
    assert page.errors == []
    assert len(page.images) >= len(ANALYSES) + 2  # the utilities and answers figures first
    assert all(width > 0 for _alt, width in page.images), page.images
    assert page.page_width <= page.viewport_width + 1, (page.page_width, page.viewport_width)
    assert _non_blank(page.screenshot)
    html = out.read_text(encoding="utf-8")
    assert html.index("ranked utilities with 95 % intervals") < html.index("<h2>Runs</h2>")


def test_a_run_without_analyses_still_opens_with_its_figures(tmp_path):
    from cluster.pipeline.run import run
    from cluster.spec import parse_spec

    root = str(tmp_path / "r")
    spec = parse_spec(
        {
            "name": "plain",
            "root": root,
            "outcomes": ["starter"],
            "models": [{"name": "simulated", "seed": 1, "refusal_rate": 0.2}],
            "design": {"kind": "full"},
            "fit": {"bootstrap": 0},
            "execution": {"progress": "none"},
        }
    )
    run(spec)
    out = tmp_path / "page.html"
    result = CliRunner().invoke(
        cli, ["report", spec.resolved_run_id(), "--root", root, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', html)
    assert images[:2] == [
        "ranked utilities with 95 % intervals",
        "position bias and answer quality",
    ]
    if CHROMIUM is not None:
        page = check_page(out)
        assert page.errors == [] and all(w > 0 for _a, w in page.images)
        assert _non_blank(page.screenshot)
