"""The layering rule of docs/architecture.md: a module may import its own layer and the
layers below it, never one above.

    0 IR core       wanir.{errors, dtypes, tensor, scope, graph, builder, ops, options, paths, config,
                    hardware, kernels, runtime, result, jsonout, safeio, safeout, limits, interpolation, lowerings,
                    scenario, dictconfig, hydra_compose}
    1 passes        wanir.passes.*
    2 frontends     wanir.frontends.*  and  backends  wanir.backends.* (except the drivers)
    3 API           wanir (the package), wanir.estimate, and the drivers wanir.backends.{sweep, sizing, validate,
                    capacity (the package and its modules)}
    4 CLI           wanir.cli, wanir.__main__

Every import counts, at module level or inside a function. A wanir/*.py module that is in
none of the lists (a new command module) is placed in the API layer, so the core cannot
import it.

Imports sit at module level. An import inside a function (an import statement, or a call of
``importlib.import_module`` or ``__import__``) is an exception marked on its line,
``# late import: <reason>`` (an optional extra such as torch or starlette, a library that is
slow to load and only some commands need, the CLI's lazy command loading); there are at most
MAX_LATE_IMPORTS of them. The imports between wanir modules form no cycle, late ones included."""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: the most function-level imports (each marked ``# late import: <reason>``) the packages may hold
MAX_LATE_IMPORTS = 25
LATE_MARK = re.compile(r"#\s*late import:\s*\S")
#: files exempt from the late-import and model-frontend checks (none)
PENDING: set = set()
PACKAGES = {"wanir": "wanir", "passes": "wanir.passes", "frontends": "wanir.frontends", "backends": "wanir.backends"}
CORE = {"wanir.errors", "wanir.dtypes", "wanir.tensor", "wanir.scope", "wanir.graph", "wanir.builder", "wanir.ops",
        "wanir.options", "wanir.paths", "wanir.config", "wanir.hardware", "wanir.kernels", "wanir.runtime",
        "wanir.result", "wanir.jsonout", "wanir.safeio", "wanir.safeout", "wanir.limits", "wanir.interpolation", "wanir.lowerings",
        "wanir.scenario", "wanir.dictconfig", "wanir.hydra_compose"}
DRIVERS = {"wanir.backends.sweep", "wanir.backends.sizing", "wanir.backends.validate", "wanir.backends.capacity"}
CLI = {"wanir.cli", "wanir.__main__"}
NAMES = {0: "IR core", 1: "passes", 2: "frontends/backends", 3: "API", 4: "CLI"}


def layer(mod: str) -> int:
    if mod in CLI:
        return 4
    if mod in DRIVERS or mod.startswith("wanir.backends.capacity.") or mod in ("wanir", "wanir.estimate"):
        return 3
    for pkg, lvl in (("wanir.passes", 1), ("wanir.frontends", 2), ("wanir.backends", 2)):
        if mod == pkg or mod.startswith(pkg + "."):
            return lvl
    if any(mod == c or mod.startswith(c + ".") for c in CORE):
        return 0
    return 3


def modules():
    for d, pkg in PACKAGES.items():
        for f in sorted((ROOT / d).rglob("*.py")):
            if "configs" in f.parts:
                continue
            parts = [p for p in f.relative_to(ROOT / d).with_suffix("").parts if p != "__init__"]
            yield ".".join([pkg, *parts]), f


def imports(mod: str, path: Path, nodes=ast.walk):
    """The wanir modules ``path`` imports (absolute and relative, at any depth; ``nodes`` picks
    the statements looked at from the parsed module)."""
    is_pkg = path.name == "__init__.py"
    for n in nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(n, ast.Import):
            for a in n.names:
                if a.name.split(".")[0] == "wanir":
                    yield a.name, n.lineno
        elif isinstance(n, ast.ImportFrom):
            if n.level:
                base = mod.split(".")
                base = base[:len(base) - (n.level - 1) - (0 if is_pkg else 1)]
                name = ".".join(base + ([n.module] if n.module else []))
            else:
                name = n.module or ""
            if name.split(".")[0] != "wanir":
                continue
            if n.module is None or name in ("wanir", *PACKAGES.values()):   # from wanir import x: x may be a module
                for a in n.names:
                    yield f"{name}.{a.name}", n.lineno
            else:
                yield name, n.lineno


def resolve(name: str, known: set) -> str:
    """The module an imported name refers to (``wanir.estimate`` for ``wanir.estimate.x``)."""
    while name not in known and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


@pytest.mark.slow
def test_no_module_imports_a_higher_layer():
    mods = dict(modules())
    assert "wanir.estimate" in mods and "wanir.backends.parallel" in mods and "wanir.passes.flops" in mods
    bad = []
    for mod, path in mods.items():
        for name, line in imports(mod, path):
            dep = resolve(name, set(mods))
            if layer(dep) > layer(mod):
                bad.append(f"{path.relative_to(ROOT)}:{line}: {mod} ({NAMES[layer(mod)]}) imports {dep} "
                           f"({NAMES[layer(dep)]})")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("src, mod, dep", [
    ("from wanir.estimate import estimate\n", "wanir.graph", "wanir.estimate"),
    ("def f():\n    from ..backends import roofline\n", "wanir.passes.flops", "wanir.backends.roofline"),
    ("from . import sweep\n", "wanir.backends.report", "wanir.backends.sweep"),
    ("import wanir.cli\n", "wanir.estimate", "wanir.cli"),
])
def test_the_checker_sees_upward_imports(tmp_path, src, mod, dep):
    f = tmp_path / "m.py"
    f.write_text(src)
    known = {mod, dep, "wanir.backends.roofline", "wanir.backends.sweep"}
    deps = [resolve(n, known) for n, _ in imports(mod, f)]
    assert dep in deps and layer(dep) > layer(mod)


def test_config_and_hardware_do_not_import_each_other():
    mods = dict(modules())
    known = set(mods)
    hw_deps = {resolve(n, known) for n, _ in imports("wanir.hardware", mods["wanir.hardware"])}
    assert "wanir.config" not in hw_deps          # hardware takes the config directory from wanir.paths
    assert "wanir.paths" in hw_deps


def _imports_a_module(node) -> bool:
    """``node`` imports a module: an import statement, or a call of ``import_module`` (as
    ``importlib.import_module`` or imported by name) or ``__import__``."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return True
    if isinstance(node, ast.Call):
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
        return name in ("import_module", "__import__")
    return False


def function_imports(path: Path):
    """(line number, source line) of every import inside a function of ``path`` (statements and
    ``import_module`` / ``__import__`` calls)."""
    src = path.read_text()
    lines = src.splitlines()
    out = []

    def walk(node, in_function):
        for ch in ast.iter_child_nodes(node):
            if in_function and _imports_a_module(ch):
                out.append((ch.lineno, lines[ch.lineno - 1]))
            walk(ch, in_function or isinstance(ch, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))
    walk(ast.parse(src, str(path)), False)
    return out


@pytest.mark.slow
def test_function_level_imports_are_marked_and_few():
    unmarked, marked = [], []
    for _, path in modules():
        rel = path.relative_to(ROOT).as_posix()
        for line, text in function_imports(path):
            if LATE_MARK.search(text):
                marked.append(f"{rel}:{line}")
            elif rel not in PENDING:
                unmarked.append(f"{rel}:{line}: {text.strip()}")
    assert not unmarked, ("imports inside functions, not marked '# late import: <reason>' (hoist them to "
                          "module level, or mark why they must wait):\n" + "\n".join(unmarked))
    assert len(marked) <= MAX_LATE_IMPORTS, f"{len(marked)} late imports, at most {MAX_LATE_IMPORTS}: {marked}"


def module_level_imports(mod: str, path: Path):
    """The wanir modules ``path`` imports when it is imported: module-level statements, those in
    ``if``/``try`` blocks included, ``if TYPE_CHECKING:`` blocks and function bodies excluded."""
    def top(tree):
        stmts = []

        def walk(body):
            for n in body:
                if isinstance(n, (ast.Import, ast.ImportFrom)):
                    stmts.append(n)
                elif isinstance(n, ast.If) and not (isinstance(n.test, ast.Name) and n.test.id == "TYPE_CHECKING"):
                    walk(n.body)
                    walk(n.orelse)
                elif isinstance(n, ast.Try):
                    walk(n.body)
                    for h in n.handlers:
                        walk(h.body)
                    walk(n.orelse)
                    walk(n.finalbody)
        walk(tree.body)
        return stmts
    return list(imports(mod, path, nodes=top))


def import_cycle(graph: dict) -> list | None:
    """One cycle of the directed graph ``graph`` (module -> modules it imports), or None."""
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None
    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def _import_graph(imports_of) -> dict:
    """module -> the wanir modules it imports (``imports_of(mod, path)`` lists them); a
    package importing from its own modules is not an edge."""
    mods = dict(modules())
    known = set(mods)
    graph = {}
    for mod, path in mods.items():
        deps = {resolve(n, known) for n, _ in imports_of(mod, path)}
        graph[mod] = {d for d in deps if d in known and d != mod and not mod.startswith(d + ".")}
    return graph


@pytest.mark.slow
def test_module_level_imports_have_no_cycle():
    graph = _import_graph(module_level_imports)
    assert "wanir.kernels" in graph["wanir.hardware"]
    cycle = import_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.slow
def test_imports_late_ones_included_have_no_cycle():
    """No hidden cycle: a late import is never the way around one (module A imports B at its
    head while B imports A inside a function); a package importing from its own modules is
    not a cycle."""
    graph = _import_graph(imports)
    assert "wanir.dictconfig" in graph["wanir.config"] and "wanir.hydra_compose" in graph["wanir.config"]
    cycle = import_cycle(graph)
    assert cycle is None, "import cycle (late imports included): " + " -> ".join(cycle)


def test_the_checkers_see_unmarked_late_imports_and_cycles(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import os\nimport importlib\n\ndef f():\n    import json\n    import yaml  # late import: optional\n"
                 "    return importlib.import_module('csv'), __import__('zlib')\n")
    found = function_imports(f)
    assert [line for line, _ in found] == [5, 6, 7, 7]
    assert [bool(LATE_MARK.search(t)) for _, t in found] == [False, True, False, False]
    assert import_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert import_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


#: the frontends' public seams: the pipeline that composes the stages, models from files and
#: from YAML specs; every other frontend module lowers one model family
FRONTEND_SEAMS = {"wanir.frontends", "wanir.frontends.pipeline", "wanir.frontends.checkpoint",
                  "wanir.frontends.spec"}


@pytest.mark.slow
def test_no_module_outside_the_frontends_imports_a_model_frontend():
    """Passes, backends, the core and the API reach model-specific knowledge through data on the
    graph (passes/experts.py reads graph.meta['experts']) or a registry (wanir/lowerings.py),
    never by importing a model's frontend; they may use the frontends' seams (FRONTEND_SEAMS)."""
    mods = dict(modules())
    known = set(mods)
    assert {"wanir.frontends.wan22", "wanir.frontends.wan_vae"} <= known
    bad = []
    for mod, path in mods.items():
        if mod.startswith("wanir.frontends") or path.relative_to(ROOT).as_posix() in PENDING:
            continue
        for name, line in imports(mod, path):
            dep = resolve(name, known)
            if dep.startswith("wanir.frontends.") and dep not in FRONTEND_SEAMS:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {mod} imports the model frontend {dep}")
    assert not bad, "\n".join(bad)
