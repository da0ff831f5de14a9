"""The package's module import graph has no cycle (``TYPE_CHECKING`` imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

import robust_style

ROOT = Path(robust_style.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")
            if "protos" not in p.relative_to(ROOT).parts}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of the package ``name`` imports anywhere in its file, resolved to modules."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for t in targets:
            while t and t not in known:  # ``from pkg import name``: the module, else pkg
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: _imports(name, path, known) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a list of modules (first = last), or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _edges_without_parents(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Imports of a module's own ancestors (Python runs ``pkg/__init__`` first anyway, and a
    package re-exporting its children is not a cycle between modules) left out."""
    return {m: {t for t in deps if not m.startswith(t + ".") and not t.startswith(m + ".")}
            for m, deps in graph.items()}


def test_find_cycle_reports_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_module_import_graph_is_acyclic() -> None:
    graph = _edges_without_parents(import_graph())
    assert "robust_style.server.dataplane" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_serving_path_never_imports_torch() -> None:
    graph = import_graph()
    seen, todo = set(), ["robust_style.server.app", "robust_style.server.local"]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph.get(m, ()))
    heavy = sorted(m for m in seen if m.startswith(("robust_style.transformer_net",
                                                     "robust_style.perceptual")))
    assert not heavy, f"the serving path imports {heavy}"


def _private_reads(path: Path) -> list[str]:
    """``x._name`` where ``x`` is not ``self``/``cls`` or a third-party module, and
    ``from robust_style... import _name``: reads of another module's private state."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    third_party: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            third_party |= {(a.asname or a.name).split(".")[0] for a in node.names
                            if not a.name.startswith("robust_style")}
        elif isinstance(node, ast.ImportFrom) and not node.level and \
                not (node.module or "").startswith("robust_style"):
            third_party |= {a.asname or a.name for a in node.names}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and \
                not node.attr.startswith("__"):
            v = node.value
            if isinstance(v, ast.Name) and v.id in {"self", "cls", *third_party}:
                continue
            found.append(f"{path.name}:{node.lineno} .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and (node.level or (node.module or "")
                                                   .startswith("robust_style")):
            found += [f"{path.name}:{node.lineno} import {a.name}" for a in node.names
                      if a.name.startswith("_") and not a.name.startswith("__")]
    return found


def test_no_module_reads_another_modules_private_attributes() -> None:
    found = [hit for path in _modules().values() for hit in _private_reads(path)]
    assert not found, "private attributes read from outside: " + "; ".join(found)


def test_server_rooms_are_acyclic() -> None:
    """The rooms of ``robust_style.server`` (``registry``, ``kserve``, ``engines`` ...)
    import each other in one direction only."""
    rooms: dict[str, set[str]] = {}
    for m, deps in import_graph().items():
        if m.startswith("robust_style.server."):
            room = ".".join(m.split(".")[:3])
            rooms.setdefault(room, set()).update(
                r for d in deps if d.startswith("robust_style.server.")
                and (r := ".".join(d.split(".")[:3])) != room)
    cycle = find_cycle(rooms)
    assert cycle is None, "cycle between server rooms: " + " -> ".join(cycle or [])


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph folded to ``robust_style``'s subpackages (``robust_style.server``,
    ``robust_style.evaluate`` ...; a top-level module such as ``robust_style.errors`` is its
    own node). Imports of the root package (``__version__``) are left out."""
    def package(m: str) -> str:
        return ".".join(m.split(".")[:2])

    out: dict[str, set[str]] = {}
    for m, deps in graph.items():
        if m == "robust_style":
            continue
        p = package(m)
        out.setdefault(p, set()).update(q for d in deps if d != "robust_style"
                                        and (q := package(d)) != p)
    return out


def test_package_graph_is_acyclic() -> None:
    """Layers import downwards only (e.g. ``evaluate`` uses ``perceptual``, never the other
    way), so a subpackage can be read, tested and installed without the ones above it."""
    packages = package_graph(import_graph())
    assert {"robust_style.perceptual", "robust_style.evaluate"} <= set(packages)
    # Known, not yet broken: triton_config reads the generated protos under server/ while
    # server/kserve uses triton_config (the protos should move out of server/).
    packages["robust_style.triton_config"].discard("robust_style.server")
    cycle = find_cycle(packages)
    assert cycle is None, "cycle between packages: " + " -> ".join(cycle or [])


def test_package_graph_folds_modules_into_packages() -> None:
    graph = {"robust_style.a.x": {"robust_style.b.y", "robust_style.a.z"},
             "robust_style.b.y": {"robust_style.errors", "robust_style"},
             "robust_style.errors": set(), "robust_style": {"robust_style.a.x"}}
    assert package_graph(graph) == {"robust_style.a": {"robust_style.b"},
                                    "robust_style.b": {"robust_style.errors"},
                                    "robust_style.errors": set()}
    assert find_cycle(package_graph(graph)) is None
    # b.w -> a.z closes a cycle between the packages, though no module cycle exists.
    assert find_cycle(package_graph({**graph, "robust_style.b.w": {"robust_style.a.z"}})) == [
        "robust_style.a", "robust_style.b", "robust_style.a"]
