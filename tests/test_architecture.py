"""The package's shape: packages by concern in layers, no import cycles, no module over the size allowed."""
from __future__ import annotations

import ast
import pathlib

PKG = pathlib.Path(__file__).resolve().parent.parent / "vi_stream"
MAX_LINES = 300              # past this a module says why in its docstring ("Longer than 300 lines: ...")
HARD_MAX = 450               # and no reason stretches a module past this


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: pathlib.Path) -> set[str]:
    """Every vi_stream module this file imports, at top level or inside a function (both are edges)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("vi_stream"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("vi_stream"):
                continue
            for a in node.names:   # "from . import x" imports the module x
                out.add(f"{mod}.{a.name}" if _exists(f"{mod}.{a.name}") else mod)
    return {m for m in out if _exists(m) and m != name}


def _exists(mod: str) -> bool:
    p = PKG.parent.joinpath(*mod.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in PKG.rglob("*.py")}


def _cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
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
    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_relative_and_function_level_imports():
    g = graph()
    assert "vi_stream.errors" in g["vi_stream.service.config"]   # from vi_stream.errors import ConfigError
    assert "vi_stream.io.sftp" in g["vi_stream.cli"]            # imported inside a function
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    g = graph()
    # A package's __init__ re-exports its modules; an edge from a module back to its own
    # package's __init__ would be a cycle too, and is counted.
    assert _cycles(g) == []


def test_a_module_longer_than_300_lines_says_why_in_its_docstring():
    unexplained, too_long = {}, {}
    for p in PKG.rglob("*.py"):
        n = len(p.read_text().splitlines())
        if n > HARD_MAX:
            too_long[_module_name(p)] = n
        elif n > MAX_LINES:
            doc = ast.get_docstring(ast.parse(p.read_text())) or ""
            if f"Longer than {MAX_LINES} lines: " not in doc:
                unexplained[_module_name(p)] = n
    assert unexplained == {} and too_long == {}


# What each package may import (besides itself and the base modules at the top: errors, frame,
# folders, ratelog, threads, _version). Each package's docstring says the same in words; ``cli`` may import
# anything and nothing may import it.
BASE = {"vi_stream", "vi_stream._version", "vi_stream.errors", "vi_stream.folders", "vi_stream.frame", "vi_stream.ratelog",
        "vi_stream.threads"}
MAY_IMPORT = {
    "search": set(),
    "model": {"search"},
    "io": {"model"},
    "processing": {"model"},
    "store": {"model", "io"},
    "registry": {"model", "io", "store", "processing.settings"},
    "evaluation": {"model", "io", "search"},
    "web": {"model", "processing", "store", "registry"},
    "scale": {"model", "io", "processing", "store", "web.server", "web.replies", "service.systemd"},
    "service": {"search", "model", "io", "processing", "store", "registry", "evaluation", "web", "scale"},
    "client": set(),
    "": {"client"},     # vi_stream/__init__.py: Client, lazily
    "__main__": {"cli"},
}


def _package(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def _allowed(src_pkg: str, target: str) -> bool:
    rest = target[len("vi_stream."):]
    return any(rest == a or rest.startswith(a + ".") for a in MAY_IMPORT[src_pkg])


def layering_violations(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for mod, targets in g.items():
        src = _package(mod)
        for t in targets:
            if t in BASE or _package(t) == src:
                continue
            if _package(t) == "cli" and mod != "vi_stream.__main__":   # python -m vi_stream runs the CLI
                bad.append(f"{mod} imports {t}: nothing imports the CLI")
            elif src == "cli":
                continue
            elif src not in MAY_IMPORT or not _allowed(src, t):
                bad.append(f"{mod} imports {t}")
    return sorted(bad)


def test_every_package_says_what_it_owns_and_may_import():
    for pkg in [p for p in PKG.iterdir() if (p / "__init__.py").is_file()]:
        doc = ast.get_docstring(ast.parse((pkg / "__init__.py").read_text())) or ""
        assert len(doc) > 80 and "import" in doc, f"{pkg.name}/__init__.py: say what it owns and may import"
        assert pkg.name in MAY_IMPORT or pkg.name == "cli", f"{pkg.name}: give it a row in MAY_IMPORT"


def test_packages_are_layered():
    assert layering_violations(graph()) == []


def test_the_layering_check_sees_a_violation():
    g = {"vi_stream.model.anomaly": {"vi_stream.web.app"}, "vi_stream.store.local": {"vi_stream.service.daemon"},
         "vi_stream.web.app": {"vi_stream.cli"}, "vi_stream.cli": {"vi_stream.web.app"},
         "vi_stream.processing.processor": {"vi_stream.errors", "vi_stream.model.anomaly"}}
    assert layering_violations(g) == ["vi_stream.model.anomaly imports vi_stream.web.app",
                                      "vi_stream.store.local imports vi_stream.service.daemon",
                                      "vi_stream.web.app imports vi_stream.cli: nothing imports the CLI"]


def test_the_control_interface_speaks_in_results_not_internals():
    """``live_feed()``, ``results_store()`` and ``model_registry()`` returned ``Any``, and route handlers
    reached through them into the store and the registry (``api.model_registry().shelf``): every method
    of the interface, and of what it hands out, names what it returns, and no route module imports the
    store's review or the registry's steps."""
    from vi_stream.processing import control
    for proto in (control.Control, control.LiveFeed, control.Results, control.Models):
        for name, fn in vars(proto).items():
            if callable(fn) and not name.startswith("_"):
                assert fn.__annotations__.get("return") not in (None, "Any"), f"{proto.__name__}.{name}"
    for path in (PKG / "web" / "routes").glob("*.py"):
        assert not {"vi_stream.store.review", "vi_stream.registry.retrain"} & _imports(path), path.name


TESTS = pathlib.Path(__file__).resolve().parent
WHOLE_PROJECT = {"test_architecture.py", "test_docs.py", "test_packaging.py", "test_bench_report.py", "test_sealed_split.py",
                 "test_bench_structural.py", "test_bench_false_alarms.py", "test_bench_threshold_laws.py",
                 "test_bench_trunk_calls.py"}


def test_tests_mirror_the_package_and_never_import_one_another():
    """A test of ``vi_stream/<package>`` lives in ``tests/<package>/``; only whole-project checks sit at the
    top. What tests share is in ``tests/helpers/`` or a conftest, never imported from another test module."""
    packages = {p.name for p in PKG.iterdir() if (p / "__init__.py").exists()}
    misplaced, crossing = [], []
    for path in TESTS.rglob("test_*.py"):
        rel = path.relative_to(TESTS)
        if len(rel.parts) == 1:
            if rel.name not in WHOLE_PROJECT:
                misplaced.append(str(rel))
        elif len(rel.parts) != 2 or rel.parts[0] not in packages:
            misplaced.append(str(rel))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if any(part.startswith("test_") for part in node.module.split(".")):
                    crossing.append(f"{rel}: from {'.' * node.level}{node.module}")
            if isinstance(node, ast.ImportFrom) and not node.module:
                crossing += [f"{rel}: {a.name}" for a in node.names if a.name.startswith("test_")]
    assert not misplaced, f"tests outside tests/<package>/: {misplaced}"
    assert not crossing, f"test modules importing one another: {crossing}"
