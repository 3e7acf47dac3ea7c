"""The gateway's modules form no import cycle.

Each module does one job and receives the few collaborators it uses, so imports point
downward only: from the aiohttp glue and the composition root (``server``, ``node``) through
the session and its parts to the bus and the shared protocol. Every import counts,
``TYPE_CHECKING`` ones included: a cycle there is a design cycle all the same.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "gateway" / "frys" / "gateway"


def gateway_imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        name = path.stem
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("frys.gateway."):
                    deps.add(node.module.split(".")[2])
                elif node.module == "frys.gateway":
                    deps.update(alias.name for alias in node.names)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("frys.gateway."):
                        deps.add(alias.name.split(".")[2])
        deps.discard(name)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_gateway_imports_form_no_cycle() -> None:
    graph = gateway_imports()
    assert {"session", "core", "writer", "hub", "node", "server"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def test_the_session_core_does_no_io() -> None:
    """The core imports neither asyncio, aiohttp nor nats, and no gateway part with I/O."""
    tree = ast.parse((PACKAGE / "core.py").read_text(encoding="utf-8"))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    for banned in ("asyncio", "aiohttp", "nats", "socket"):
        assert not any(m == banned or m.startswith(banned + ".") for m in modules), banned
    gateway_parts = {m.split(".")[2] for m in modules if m.startswith("frys.gateway.")}
    assert gateway_parts <= {"auth"}, gateway_parts


def test_only_the_adapter_touches_nats_private_names() -> None:
    for path in PACKAGE.glob("*.py"):
        if path.name == "nats_adapter.py":
            continue
        text = path.read_text(encoding="utf-8")
        found = re.search(r"_process_msg|DEFAULT_BUFFER_SIZE|_drain_helper|\._(id|conn)\b", text)
        assert found is None, f"{path.name} uses {found.group(0) if found else ''}"


def test_every_counter_is_exported() -> None:
    """metrics.py promises that every counter it keeps is rendered (``/metrics``, OTLP)."""
    import dataclasses

    from frys.gateway.metrics import Metrics

    exported = (PACKAGE / "telemetry.py").read_text(encoding="utf-8")
    missing = [f.name for f in dataclasses.fields(Metrics) if f"m.{f.name}" not in exported]
    assert missing == [], f"counters never exported: {missing}"
