"""Components depend downward only.

Each top-level folder contributes one ``frys`` subpackage. A component may use the ones
below it and never one above, so that the client installs without the gateway, the gateway
runs without the load tool, and a change at the top cannot break what sits under it:

    shared   <- runtime  <- gateway, router  <- loadtest  <- cli
    shared   <- client   <- loadtest

The product tests stay independent of the load tool too: what exercises the load tool
lives in ``tests/loadtest/``. Every import counts, including those inside functions and
``TYPE_CHECKING`` blocks, since any of them can fail or cycle at run time.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

COMPONENTS = ("shared", "runtime", "gateway", "router", "client", "cli", "loadtest")

ALLOWED: dict[str, frozenset[str]] = {
    "shared": frozenset({"shared"}),
    "runtime": frozenset({"shared", "runtime"}),
    "gateway": frozenset({"shared", "runtime", "gateway"}),
    "router": frozenset({"shared", "runtime", "router"}),
    "client": frozenset({"shared", "client"}),
    "loadtest": frozenset({"shared", "runtime", "client", "gateway", "router", "loadtest"}),
    "cli": frozenset(COMPONENTS),
}


def module_of(path: Path, root: Path) -> list[str]:
    """The dotted module parts of ``path`` under ``root`` (a package is its ``__init__``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def imports(path: Path, root: Path) -> Iterator[tuple[int, str]]:
    """``(line, module)`` of every import in the file, relative ones made absolute."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_of(path, root)
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:  # ``from frys import client`` uses frys.client
                if module == "frys":
                    yield node.lineno, f"frys.{alias.name}"


def frys_component(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "frys" else None


def python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if ".venv" not in p.parts)


def test_every_component_folder_is_checked() -> None:
    found = {p.name for p in ROOT.iterdir() if (p / "frys").is_dir()}
    assert found == set(COMPONENTS), "a new component needs its place in ALLOWED"


def test_components_depend_downward_only() -> None:
    violations: list[str] = []
    for component in COMPONENTS:
        folder = ROOT / component
        for path in python_files(folder):
            for line, module in imports(path, folder):
                used = frys_component(module)
                if used is not None and used not in ALLOWED[component]:
                    allowed = ", ".join(sorted(ALLOWED[component] - {component})) or "nothing"
                    violations.append(
                        f"{path.relative_to(ROOT)}:{line}: imports {module}"
                        f" ({component} may use {allowed})"
                    )
    assert not violations, "imports against the layering:\n" + "\n".join(violations)


def test_product_tests_do_not_use_the_load_tool() -> None:
    tests = ROOT / "tests"
    violations: list[str] = []
    for path in python_files(tests):
        if path.is_relative_to(tests / "loadtest"):
            continue
        for line, module in imports(path, ROOT):
            if frys_component(module) == "loadtest":
                violations.append(f"{path.relative_to(ROOT)}:{line}: imports {module}")
    assert not violations, (
        "product tests importing the load tool (move them to tests/loadtest/):\n"
        + "\n".join(violations)
    )
