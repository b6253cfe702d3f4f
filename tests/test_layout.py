"""The package's architecture, enforced by static analysis of ``src/tnd`` (``ast``, nothing imported):

* the core (``tnd/*.py``, ``interactions/``, ``dynamics/``, ``fast/``) never imports ``tnd.apps``;
* no import circle, counting lazy imports inside functions and imports under
  ``if TYPE_CHECKING:`` (a type checker follows them); ``from pkg import sub`` is an edge to the
  submodule ``pkg.sub``, and a package ``__init__`` importing its submodules has edges to them;
* no module imports another module's ``_private`` names (a private module such as ``_common.py``
  may serve the modules of its own package), nor uses the private members of another module's
  classes;

and, in a fresh interpreter, what ``import tnd`` / ``import tnd.apps`` actually import.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "tnd"
CORE_DIRS = ("interactions", "dynamics", "fast")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _is_package(mod: str) -> bool:
    return MODULES[mod].name == "__init__.py"


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@dataclass(frozen=True)
class Import:
    importer: str  # module doing the import
    target: str  # module imported (resolved, may lie outside tnd)
    names: tuple[str, ...]  # names taken by ``from target import ...`` (empty for ``import target``)
    line: int
    lazy: bool  # inside a function


def _resolve_relative(importer: str, level: int, module: str | None) -> str:
    base = importer.split(".")
    if not _is_package(importer):
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _dynamic_import(func: ast.expr) -> bool:
    return (isinstance(func, ast.Name) and func.id in ("__import__", "import_module")) or (
        isinstance(func, ast.Attribute) and func.attr == "import_module")


def _imports(mod: str) -> list[Import]:
    tree = ast.parse(MODULES[mod].read_text(), filename=str(MODULES[mod]))
    out: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for a in child.names:
                    out.append(Import(mod, a.name, (), child.lineno, lazy))
            elif isinstance(child, ast.ImportFrom):
                target = (_resolve_relative(mod, child.level, child.module) if child.level
                          else child.module or "")
                out.append(Import(mod, target, tuple(a.name for a in child.names), child.lineno, lazy))
            elif (isinstance(child, ast.Call) and child.args and isinstance(child.args[0], ast.Constant)
                  and isinstance(child.args[0].value, str) and _dynamic_import(child.func)):
                # importlib.import_module("tnd.x") / __import__("tnd.x"): an import all the same
                out.append(Import(mod, child.args[0].value, (), child.lineno, lazy))
            visit(child, inner)

    visit(tree, False)
    return out


IMPORTS: dict[str, list[Import]] = {m: _imports(m) for m in MODULES}


def _edges(imp: Import) -> set[str]:
    """The tnd modules an import statement loads (module-level granularity): the target module and,
    for ``from pkg import x`` where ``pkg.x`` is a module, that submodule."""
    subs = {f"{imp.target}.{n}" for n in imp.names} & MODULES.keys()
    out = set(subs)
    # ``import pkg`` or ``from pkg import name`` with a name defined by pkg itself loads pkg; a
    # ``from pkg import submodule`` only loads the submodule (pkg is an ancestor, loaded anyway)
    if imp.target in MODULES and (not imp.names or len(subs) < len(imp.names)):
        out.add(imp.target)
    return out


def _rel(path: Path) -> str:
    return str(path.relative_to(SRC)) if path.is_relative_to(SRC) else str(path)


def _where(imp: Import) -> str:
    return f"{_rel(MODULES[imp.importer])}:{imp.line}{' (lazy)' if imp.lazy else ''}"


def _is_core(mod: str) -> bool:
    parts = mod.split(".")
    if len(parts) <= 2:  # tnd and tnd/*.py
        return mod != "tnd.apps"
    return parts[1] in CORE_DIRS


def test_module_discovery_sees_the_layout():
    assert "tnd.graph" in MODULES and "tnd.apps.pong.env" in MODULES and "tnd.fast" in MODULES
    assert _is_core("tnd") and _is_core("tnd.graph") and _is_core("tnd.fast.loop")
    assert _is_core("tnd.interactions.base") and not _is_core("tnd.apps") and not _is_core("tnd.apps.cli")
    # the lazy-import detection works (tnd.apps.cli dispatches to its commands lazily)
    assert any(i.lazy for m in MODULES for i in IMPORTS[m])


def core_app_imports() -> list[str]:
    bad = []
    for mod in MODULES:
        if not _is_core(mod):
            continue
        for imp in IMPORTS[mod]:
            loaded = {imp.target} | {f"{imp.target}.{n}" for n in imp.names}
            if any(t == "tnd.apps" or t.startswith("tnd.apps.") for t in loaded):
                bad.append(f"{_where(imp)} imports {imp.target} {list(imp.names)}")
    return bad


def test_core_check_sees_every_form_of_import(tmp_path, monkeypatch):
    fake = tmp_path / "fake.py"
    fake.write_text("from .apps import viz\n"
                    "def f():\n"
                    "    import importlib\n"
                    "    from .apps.pong.env import SinglePlayerPong\n"
                    "    return importlib.import_module('tnd.apps.tasks')\n"
                    "class C:\n"
                    "    def g(self):\n"
                    "        import tnd.apps.cli as cli\n")
    monkeypatch.setitem(MODULES, "tnd.fake", fake)
    monkeypatch.setitem(IMPORTS, "tnd.fake", _imports("tnd.fake"))
    bad = [b for b in core_app_imports() if "fake.py" in b]
    assert len(bad) == 4, bad
    assert sum("(lazy)" in b for b in bad) == 3, bad


def test_core_never_imports_apps():
    bad = core_app_imports()
    assert not bad, "the core must not import tnd.apps:\n" + "\n".join(bad)


def import_graph() -> dict[str, dict[str, Import]]:
    graph: dict[str, dict[str, Import]] = {m: {} for m in MODULES}
    for mod in MODULES:
        for imp in IMPORTS[mod]:
            for t in _edges(imp):
                if t != mod:
                    graph[mod].setdefault(t, imp)
    return graph


def import_cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each as a sorted list."""
    graph = import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    sccs: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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
                sccs.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(MODULES)))
    for v in graph:
        if v not in index:
            strong(v)
    return sorted(sccs)


def _describe_cycle(comp: list[str]) -> str:
    graph = import_graph()
    members = set(comp)
    lines = [" <-> ".join(comp)]
    for m in comp:
        for t, imp in graph[m].items():
            if t in members:
                lines.append(f"    {m} -> {t}  ({_where(imp)})")
    return "\n".join(lines)


def test_cycle_detection_finds_a_planted_cycle():
    # the detector itself must be able to fail: plant a back edge into a copy of the graph
    graph = import_graph()
    assert "tnd.graph" in graph["tnd"]  # tnd/__init__ imports its submodules: that's an edge
    saved = list(IMPORTS["tnd.graph"])
    IMPORTS["tnd.graph"].append(Import("tnd.graph", "tnd", ("TND",), 0, True))
    try:
        assert any("tnd" in c and "tnd.graph" in c for c in import_cycles())
    finally:
        IMPORTS["tnd.graph"][:] = saved


def test_no_import_cycles():
    cycles = import_cycles()
    assert not cycles, "import circles (lazy imports count):\n" + "\n".join(map(_describe_cycle, cycles))


def _may_use_private(importer: str, owner: str) -> bool:
    """``owner`` is a private module (its last name starts with ``_``) of the importer's package."""
    if not _is_private(owner.rsplit(".", 1)[-1]):
        return False
    pkg_of_importer = importer if _is_package(importer) else importer.rsplit(".", 1)[0]
    return owner.rsplit(".", 1)[0] == pkg_of_importer


def private_name_imports() -> list[str]:
    bad = []
    for mod in MODULES:
        tree = ast.parse(MODULES[mod].read_text())
        aliases: dict[str, str] = {}  # local name -> tnd module it is bound to
        for imp in IMPORTS[mod]:
            for n in imp.names:
                if _is_private(n) and f"{imp.target}.{n}" not in MODULES and imp.target.startswith("tnd"):
                    if imp.target != mod and not _may_use_private(mod, imp.target):
                        bad.append(f"{_where(imp)} imports {n} from {imp.target}")
        # module objects bound by imports: ``from . import x`` / ``import tnd.x as y``
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = (_resolve_relative(mod, node.level, node.module) if node.level
                          else node.module or "")
                for a in node.names:
                    if f"{target}.{a.name}" in MODULES:
                        aliases[a.asname or a.name] = f"{target}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in MODULES and a.asname:
                        aliases[a.asname] = a.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and _is_private(node.attr)):
                owner = aliases[node.value.id]
                if f"{owner}.{node.attr}" in MODULES and _may_use_private(mod, f"{owner}.{node.attr}"):
                    continue
                if owner != mod and not _may_use_private(mod, owner):
                    bad.append(f"{_rel(MODULES[mod])}:{node.lineno} uses {node.value.id}.{node.attr} "
                               f"({owner})")
            elif isinstance(node, ast.Import):
                # ``import tnd.x._y`` style module attribute chains
                for a in node.names:
                    for i, part in enumerate(a.name.split(".")[1:], 1):
                        owner = ".".join(a.name.split(".")[: i + 1])
                        if _is_private(part) and owner in MODULES and not _may_use_private(mod, owner):
                            bad.append(f"{_rel(MODULES[mod])}:{node.lineno} imports private module {owner}")
        # private modules imported from outside their package
        for imp in IMPORTS[mod]:
            for t in {imp.target} | {f"{imp.target}.{n}" for n in imp.names}:
                if t in MODULES and _is_private(t.rsplit(".", 1)[-1]) and not _may_use_private(mod, t):
                    bad.append(f"{_where(imp)} imports private module {t}")
    return sorted(set(bad))


def test_private_rule_is_understood():
    assert _may_use_private("tnd.apps.viz.graph", "tnd.apps.viz._common")
    assert _may_use_private("tnd.apps.viz", "tnd.apps.viz._common")
    assert not _may_use_private("tnd.apps.pong.report", "tnd.apps.viz._common")
    assert not _may_use_private("tnd.apps.pong.policies", "tnd.apps.pong.env")


def test_private_check_catches_names_attributes_and_modules(tmp_path, monkeypatch):
    fake = tmp_path / "fake.py"
    fake.write_text("from .env import _check_action, SinglePlayerPong\n"
                    "from . import env\n"
                    "from ..viz import _common\n"
                    "def f():\n"
                    "    return env._make_rng(0)\n")
    monkeypatch.setitem(MODULES, "tnd.apps.pong.fake", fake)
    monkeypatch.setitem(IMPORTS, "tnd.apps.pong.fake", _imports("tnd.apps.pong.fake"))
    bad = [b for b in private_name_imports() if "fake.py" in b]
    assert any("_check_action" in b for b in bad) and not any("SinglePlayerPong" in b for b in bad)
    assert any("env._make_rng" in b for b in bad)
    assert any("private module tnd.apps.viz._common" in b for b in bad)


def test_no_private_names_across_modules():
    bad = private_name_imports()
    assert not bad, "modules import another module's _private names:\n" + "\n".join(bad)


def _private_members(tree: ast.AST) -> set[str]:
    """Private methods and ``self._x`` attributes of the classes defined in a module."""
    names: set[str] = set()
    for c in ast.walk(tree):
        if isinstance(c, ast.ClassDef):
            for n in ast.walk(c):
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and _is_private(n.name):
                    names.add(n.name)
                elif (isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store) and _is_private(n.attr)
                      and isinstance(n.value, ast.Name) and n.value.id == "self"):
                    names.add(n.attr)
    return names


def private_member_uses() -> list[str]:
    """``obj._x`` where ``_x`` is a private member of a class of another tnd module (and of no
    class of this one): one module reaching into another's objects. A heuristic by name: the
    object's type is unknown statically, so a name private to this module's own classes passes."""
    trees = {m: ast.parse(p.read_text()) for m, p in MODULES.items()}
    defined = {m: _private_members(t) for m, t in trees.items()}
    bad = []
    for mod, tree in trees.items():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and _is_private(node.attr)) or node.attr in defined[mod]:
                continue
            v = node.value
            if isinstance(v, ast.Name) and v.id in ("self", "cls"):
                continue
            if isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id == "super":
                continue
            owners = sorted(m for m, names in defined.items() if m != mod and node.attr in names)
            if owners:
                bad.append(f"{_rel(MODULES[mod])}:{node.lineno} uses {ast.unparse(node)} "
                           f"(private to {', '.join(owners)})")
    return bad


def test_private_member_check_catches_a_planted_use(tmp_path, monkeypatch):
    fake = tmp_path / "fake.py"
    fake.write_text("def f(env, model):\n    env.unwrapped.step(0)\n    return model._timespans\n")
    monkeypatch.setitem(MODULES, "tnd.apps.fake", fake)
    bad = [b for b in private_member_uses() if "fake.py" in b]
    assert len(bad) == 1 and "model._timespans" in bad[0] and "tnd.model" in bad[0], bad


def test_no_private_members_of_other_modules_objects():
    bad = private_member_uses()
    assert not bad, "modules use private members of other modules' classes:\n" + "\n".join(bad)


HEAVY = ("gymnasium", "matplotlib", "ray", "tqdm", "networkx")


def _fresh_import(stmt: str) -> list[str]:
    code = f"import sys, json\n{stmt}\nprint(json.dumps(sorted(sys.modules)))"
    env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_tnd_is_light():
    mods = _fresh_import("import tnd")
    assert "tnd" in mods and "tnd.graph" in mods and "torch" in mods
    by_torch = set(_fresh_import("import torch"))  # e.g. numpy, and tqdm on some torch builds
    heavy = [m for m in mods if m.split(".")[0] in HEAVY and m not in by_torch]
    assert not heavy, f"import tnd imported {heavy}"
    apps = [m for m in mods if m == "tnd.apps" or m.startswith("tnd.apps.")]
    assert not apps, f"import tnd imported {apps}"


def test_import_tnd_apps_imports_no_subpackage():
    mods = _fresh_import("import tnd.apps")
    assert "tnd.apps" in mods
    sub = [m for m in mods if m.startswith("tnd.apps.")]
    assert not sub, f"import tnd.apps imported {sub}"


def test_gymnasium_makes_the_env_from_its_entry_point():
    pytest.importorskip("gymnasium")
    code = ("import sys, gymnasium\n"
            "assert 'tnd.apps.pong' not in sys.modules\n"
            "env = gymnasium.make('tnd.apps.pong:tnd/SinglePlayerPong-v0')\n"
            "obs, info = env.reset(seed=0)\n"
            "obs2, r, term, trunc, info = env.step(env.action_space.sample())\n"
            "assert env.observation_space.contains(obs), obs\n"
            "print(type(env.unwrapped).__module__)\n")
    env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1].startswith("tnd.apps.pong")


if __name__ == "__main__":  # print today's violations
    print("core -> apps:", *core_app_imports(), sep="\n  ")
    print("cycles:", *map(_describe_cycle, import_cycles()), sep="\n  ")
    print("private names:", *private_name_imports(), sep="\n  ")
    print("private members:", *private_member_uses(), sep="\n  ")
