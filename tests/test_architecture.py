"""The layout rules of docs/architecture.md, checked on the source tree.

- Imports point one way: ``storage`` ← ``elicit``, ``fit`` ← ``cluster`` (``elicit`` and ``fit``
  never import each other's internals, nothing below ``cluster`` imports it).
- No import cycle between the project's modules, counting imports inside functions too (a lazy
  import still makes two modules depend on each other); ``TYPE_CHECKING`` blocks do not count.
- No module over 600 lines; ``cluster/`` holds sub-packages plus a handful of modules.
- Only ``cluster/store.py`` opens the results catalog (``storage.catalog.connect``).
- Only ``cluster/cli`` prints (and the driver's progress display).
- No file points at design documents outside the repository.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("storage", "elicit", "fit", "cluster")


def _modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            rel = path.relative_to(REPO).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rsplit(".", 1)[0] if "." in name else ""
        return name or None

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (target := resolve(alias.name)) is not None:
                    out.add(target)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                target = full if full in known else resolve(base)
                if target is not None:
                    out.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    out.discard(module)
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {m: _imports(p, m, known) for m, p in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def _package_edges(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    """Edges between modules, ignoring those from a package to its own submodules."""
    edges = set()
    for src, targets in graph.items():
        for dst in targets:
            if dst.startswith(src + "."):
                continue  # a package's __init__ re-exporting its own modules
            edges.add((src, dst))
    return edges


def test_no_import_cycle() -> None:
    graph = _graph()
    # a package __init__ that re-exports its submodules is not a cycle with them
    pruned = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph.items()}
    assert _cycles(pruned) == []


def test_cycle_detector_finds_a_planted_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_layers_point_one_way() -> None:
    rank = {"storage": 0, "elicit": 1, "fit": 1, "cluster": 2}
    bad = []
    for src, dst in _package_edges(_graph()):
        a, b = src.split(".")[0], dst.split(".")[0]
        if rank[b] > rank[a] or (a != b and rank[a] == rank[b]):
            bad.append(f"{src} imports {dst}")
    assert bad == []


def test_modules_stay_under_600_lines() -> None:
    long = {
        str(p.relative_to(REPO)): n
        for p in [*_modules().values(), *REPO.glob("benchmarks/*.py")]
        if (n := len(p.read_text().splitlines())) > 600
    }
    assert long == {}


def test_cluster_top_level_is_subpackages_and_a_handful_of_modules() -> None:
    modules = sorted(p.name for p in (REPO / "cluster").glob("*.py"))
    assert modules == ["__init__.py", "errors.py", "spec.py", "store.py"]


def test_only_the_run_store_opens_the_catalog() -> None:
    pattern = re.compile(r"\bcatalog\.connect\b|from storage\.catalog import[^\n]*\bconnect\b")
    users = sorted(
        str(p.relative_to(REPO))
        for p in _modules().values()
        if not str(p.relative_to(REPO)).startswith("storage/") and pattern.search(p.read_text())
    )
    assert users == ["cluster/store.py"]


def test_only_the_cli_prints() -> None:
    offenders = []
    for module, path in _modules().items():
        # the CLI, and the progress display the driver owns (bars on a terminal, lines in pods)
        if module.startswith("cluster.cli") or module == "cluster.execution.progress":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            is_call = isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            if is_call and node.func.id == "print":  # type: ignore[attr-defined]
                offenders.append(f"{module}:{node.lineno}")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cluster.cli"):
                offenders.append(f"{module}:{node.lineno} imports {node.module}")
    assert offenders == []


def test_no_reference_to_design_docs_outside_the_repo() -> None:
    files = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    pattern = re.compile(r"\b(DESIGN|METHODS|STYLE)\.md\b|\.\./shared/")
    hits = []
    for name in files:
        path = REPO / name
        if not path.is_file() or path.suffix in {".png", ".parquet", ".gguf"}:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        if name == "tests/test_architecture.py":
            continue
        hits += [
            f"{name}:{i}" for i, line in enumerate(text.splitlines(), 1) if pattern.search(line)
        ]
    assert hits == []


def test_the_architecture_doc_names_every_cluster_module() -> None:
    """docs/architecture.md matches the tree: each module of cluster/ is named in it."""
    doc = (REPO / "docs" / "architecture.md").read_text()
    missing = [
        str(p.relative_to(REPO))
        for p in sorted((REPO / "cluster").rglob("*.py"))
        if p.name != "__init__.py" and not re.search(rf"[`/]{re.escape(p.name)}`", doc)
    ]
    assert missing == []
