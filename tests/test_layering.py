"""The layering rule of docs/architecture.md: a module may import its own layer and the
layers below it, never one above.

    0 IR core       wanir.{errors, dtypes, tensor, scope, graph, builder, ops, options, paths, config,
                    hardware, kernels, runtime, result, jsonout, safeio, limits, interpolation, scenario}
    1 passes        wanir.passes.*
    2 frontends     wanir.frontends.*  and  backends  wanir.backends.* (except the drivers)
    3 API           wanir (the package), wanir.estimate, and the drivers wanir.backends.{sweep, sizing, validate,
                    capacity (the package and its modules)}
    4 CLI           wanir.cli, wanir.__main__

Every import counts, at module level or inside a function. A wanir/*.py module that is in
none of the lists (a new command module) is placed in the API layer, so the core cannot
import it."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"wanir": "wanir", "passes": "wanir.passes", "frontends": "wanir.frontends", "backends": "wanir.backends"}
CORE = {"wanir.errors", "wanir.dtypes", "wanir.tensor", "wanir.scope", "wanir.graph", "wanir.builder", "wanir.ops",
        "wanir.options", "wanir.paths", "wanir.config", "wanir.hardware", "wanir.kernels", "wanir.runtime",
        "wanir.result", "wanir.jsonout", "wanir.safeio", "wanir.limits", "wanir.interpolation",
        "wanir.scenario"}
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


def imports(mod: str, path: Path):
    """The wanir modules ``path`` imports (absolute and relative, at any depth)."""
    is_pkg = path.name == "__init__.py"
    for n in ast.walk(ast.parse(path.read_text(), str(path))):
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
