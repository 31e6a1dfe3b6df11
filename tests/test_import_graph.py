"""The import graphs of the ``ml`` and ``bench`` packages have no circle, and ``ml`` never imports ``bench``.

Every ``.py`` file under ``ml/`` (and, for the second graph, ``bench/``) is parsed with :mod:`ast` (nothing is imported). Each
``import ml.x`` / ``from ml.x import y`` / relative ``from .x import y`` statement, at module
level or inside a function or class, becomes an edge to the module it loads:
``from ml.x import y`` points at ``ml.x.y`` when that is a module (a file or a package under
``ml/``), otherwise at ``ml.x`` (``y`` is a name defined there).

* Imports inside functions (lazy imports) count. A lazy import hides a circle from the
  interpreter but not from the reader: the two modules still depend on each other, cannot be
  understood or tested one without the other, and the circle is back as soon as someone moves
  the import to the top. So no exception is made for them.
* Imports under ``if TYPE_CHECKING:`` do not count: they never run, and annotations-only
  references (``from __future__ import annotations``) are how a module names a type it does
  not use at run time.
* The same holds one level up, between the sub-packages of ``ml`` (``ml.render``,
  ``ml.decode``, ...): a package that imports another must not be imported back by it, even by
  different modules (``ml.render.floor`` decoding while ``ml.decode.heads`` reads
  ``ml.render.style`` was such a circle). Modules directly under ``ml`` count as their own node.
* The implicit import of a module's parent packages (``ml.x.y`` runs ``ml/x/__init__.py``
  first) is not an edge: every package ``__init__`` imports its own submodules, so counting it
  would make every package a circle with its members without saying anything about the code.
* ``bench/`` is read the same way, together with ``ml/``: the benchmarks import each other and the
  library, so one graph over both packages has an edge for every ``bench.x`` and ``ml.x`` import
  (the rules above, unchanged). It has no circle (``bench.hre_paper`` <-> ``bench.hre_paper_report``
  was one: the paper's tables now live in ``bench.hre_paper_data``, which both read), and the
  library never imports a benchmark (``ml`` is below ``bench``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ML = Path(__file__).resolve().parents[1] / "ml"
BENCH = Path(__file__).resolve().parents[1] / "bench"


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement in ``tree`` (any depth), except those under ``if TYPE_CHECKING:``."""
    out: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def import_graph(root: Path = ML, *more: Path) -> dict[str, set[str]]:
    """Module -> the modules it imports, over the package ``root`` and any ``more`` packages beside it.

    An edge is an import of a module of one of these packages (see the module docstring for the rules);
    imports of anything else (numpy, dagster, ...) are not edges.
    """
    modules = {_module_name(p, r): p for r in (root, *more) for p in sorted(r.rglob("*.py"))}
    pkgs = tuple(r.name for r in (root, *more))

    def resolve(target: str) -> str | None:
        """The longest prefix of ``target`` that is a module under ``root``."""
        parts = target.split(".")
        for k in range(len(parts), 0, -1):
            name = ".".join(parts[:k])
            if name in modules:
                return name
        return None

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        for node in _imports(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                targets = [f"{src}.{a.name}" for a in node.names]
            for tgt in targets:
                if not any(tgt == pkg or tgt.startswith(pkg + ".") for pkg in pkgs):
                    continue
                r = resolve(tgt)
                if r is not None and r != mod:
                    graph[mod].add(r)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle ``[a, b, ..., a]`` of ``graph``, or None (iterative depth-first search)."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    for start in sorted(graph):
        if colour[start] != WHITE:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        colour[start] = GREY
        path = [start]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                colour[node] = BLACK
                stack.pop()
                path.pop()
                continue
            if colour.get(nxt, BLACK) == GREY:
                return path[path.index(nxt):] + [nxt]
            if colour.get(nxt) == WHITE:
                colour[nxt] = GREY
                stack.append((nxt, iter(sorted(graph[nxt]))))
                path.append(nxt)
    return None


def test_graph_rules_on_a_toy_package(tmp_path):
    """Lazy and relative imports are edges, ``TYPE_CHECKING`` ones are not, names resolve to their module."""
    root = tmp_path / "ml"
    (root / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": "from typing import TYPE_CHECKING\nimport numpy\nfrom ml.sub import b, some_name\n"
                "if TYPE_CHECKING:\n    from ml.c import C\n",
        "c.py": "def f():\n    from .sub.b import g\n    return g\n",
        "sub/__init__.py": "some_name = 1\n",
        "sub/b.py": "import ml.a\n",
    }
    for name, text in files.items():
        (root / name).write_text(text)
    g = import_graph(root)
    assert g == {
        "ml": set(), "ml.a": {"ml.sub.b", "ml.sub"}, "ml.c": {"ml.sub.b"}, "ml.sub": set(), "ml.sub.b": {"ml.a"},
    }
    assert find_cycle(g) == ["ml.a", "ml.sub.b", "ml.a"]


def test_find_cycle_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.fixture(scope="module")
def ml_graph() -> dict[str, set[str]]:
    return import_graph()


@pytest.fixture(scope="module")
def ml_bench_graph() -> dict[str, set[str]]:
    return import_graph(ML, BENCH)


def test_ml_import_graph_has_no_cycle(ml_graph):
    g = ml_graph
    assert len(g) > 50 and "ml.mapmatch.hmm" in g["ml.baselines.mr.hre"]  # it did read the package
    cycle = find_cycle(g)
    assert cycle is None, "import circle in ml/: " + " -> ".join(cycle)


def package_graph(graph: dict[str, set[str]], pkg: str = "ml") -> dict[str, set[str]]:
    """The module graph collapsed to the sub-packages of ``pkg`` (``ml.render.image`` -> ``ml.render``)."""

    def top(m: str) -> str:
        return ".".join(m.split(".")[:2])

    out: dict[str, set[str]] = {top(m): set() for m in graph}
    for a, bs in graph.items():
        out[top(a)].update(top(b) for b in bs if top(b) != top(a))
    return out


def test_ml_subpackages_have_no_cycle(ml_graph):
    g = ml_graph
    pg = package_graph(g)
    assert "ml.render" in pg["ml.decode"]  # the decoder reads the colour contract
    cycle = find_cycle(pg)
    if cycle is not None:
        links = [sorted(f"{a} -> {b}" for a in g if a.startswith(x + ".") or a == x for b in g[a]
                        if b == y or b.startswith(y + ".")) for x, y in zip(cycle, cycle[1:])]
        raise AssertionError("import circle between ml sub-packages: " + " -> ".join(cycle) + f" (via {links})")


def test_graph_over_two_packages(tmp_path):
    """Edges cross between the packages read together; a package left out is no edge."""
    for name, text in {
        "ml/__init__.py": "", "ml/core.py": "import numpy\n",
        "bench/__init__.py": "", "bench/data.py": "from ml.core import f\n",
        "bench/run.py": "from bench.data import T\nfrom bench import report\n",
        "bench/report.py": "def w():\n    from bench.run import main\n",
    }.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    g = import_graph(tmp_path / "ml", tmp_path / "bench")
    assert g["bench.data"] == {"ml.core"} and g["bench.run"] == {"bench.data", "bench.report"}
    assert find_cycle(g) == ["bench.report", "bench.run", "bench.report"]
    assert import_graph(tmp_path / "bench")["bench.data"] == set()  # ml not read: no edge


def test_bench_import_graph_has_no_cycle(ml_bench_graph):
    g = ml_bench_graph
    assert "bench.hre_paper_data" in g["bench.hre_paper_report"] and "ml.baselines.mr.hre" in g["bench.hre_paper"]
    cycle = find_cycle(g)
    assert cycle is None, "import circle in bench/ (with ml/): " + " -> ".join(cycle)


def test_ml_never_imports_bench(ml_bench_graph):
    g = ml_bench_graph
    up = sorted(f"{a} -> {b}" for a, bs in g.items() if a.split(".")[0] == "ml" for b in bs if b.split(".")[0] == "bench")
    assert not up, "ml imports bench: " + ", ".join(up)
