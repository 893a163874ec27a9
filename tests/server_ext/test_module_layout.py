"""What each process imports: the service side stays free of the kernel package.

The service runs the kernel side's code only in other interpreters (containers, the zygote program
``runtimes/zygote_main.py``), so importing the service must load nothing from ``abaco_nb``. Checked in
a fresh interpreter, since this test process has imported everything.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path


def _modules_after(*imports: str) -> list[str]:
    code = "import json, sys\n" + "".join(f"import {m}\n" for m in imports)
    code += "print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return list(json.loads(out.stdout))


def test_the_service_side_imports_nothing_from_abaco_nb() -> None:
    loaded = _modules_after(
        "server_ext.service.service", "server_ext.service.runtimes.zygote", "server_ext.standalone"
    )
    assert [m for m in loaded if m == "abaco_nb" or m.startswith("abaco_nb.")] == []


def test_abaco_nb_serve_needs_only_tornado() -> None:
    """``abaco-nb serve`` (cli -> standalone -> handlers) never loads jupyter_server (~42 ms a start)."""
    loaded = _modules_after("server_ext.cli", "server_ext.standalone", "server_ext.handlers")
    assert "tornado.web" in loaded
    assert [m for m in loaded if m.startswith("jupyter_server")] == []


def test_proxy_mode_loads_no_service() -> None:
    loaded = _modules_after("server_ext.proxy")
    assert "server_ext.service.rest" in loaded
    assert "server_ext.service.service" not in loaded and "server_ext.service.store" not in loaded


# -- the import graph: no cycles ---------------------------------------------------------------------------

PACKAGES = ("server_ext", "abaco_nb")
ROOT = Path(__file__).resolve().parents[2]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``module`` imports when it is imported: its top-level statements (also
    inside try/if, except ``if TYPE_CHECKING:``), not imports deferred into functions."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.If) and _is_type_checking(node):
                visit(node.orelse)
            elif isinstance(node, ast.If | ast.Try | ast.With):
                for block in ("body", "orelse", "finalbody", "handlers"):
                    for child in getattr(node, block, []):
                        visit(child.body if isinstance(child, ast.ExceptHandler) else [child])
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)

    visit(ast.parse(path.read_text()).body)
    # A module's own packages are imported before it, whatever it says: not an edge.
    ancestors = {module.rsplit(".", n)[0] for n in range(1, module.count(".") + 1)}
    return {name for name in found if name in known and name != module and name not in ancestors}


def import_graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    known = set(paths)
    return {module: _imports(module, path, known) for module, path in paths.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the list of modules around it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := walk(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := walk(node)) is not None:
            return found
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_itself_back() -> None:
    graph = import_graph()
    assert "server_ext.service.api" in graph and "server_ext.service.rest" in graph["server_ext.service.api"]
    assert _cycle(graph) is None


def test_proxy_mode_needs_only_the_http_types() -> None:
    graph = import_graph()
    assert "server_ext.service.service" not in graph["server_ext.proxy"]
    assert "server_ext.service.api" not in graph["server_ext.proxy"]
