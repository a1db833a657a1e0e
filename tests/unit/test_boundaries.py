"""The boundaries of DESIGN.md, checked on every module's imports (read, not run): a service
package imports only the chassis's libraries, never another service nor the operator's
tools; the libraries import no service and no tool; the tools import no service."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("directory", "store", "cache", "router", "transformer", "f4", "feedsvc")


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of its code (lazy imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "v1" not in p.relative_to(ROOT).parts)


def top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_only_the_chassis_libraries(service):
    wrong = {}
    for path in modules(service):
        bad = sorted(m for m in imports_of(path) if (top(m) in SERVICES and top(m) != service)
                     or m == "trenchcoat.ops" or m.startswith("trenchcoat.ops."))
        if bad:
            wrong[str(path.relative_to(ROOT))] = bad
    assert not wrong, f"{service} reaches past the chassis's libraries: {wrong}"


def test_the_libraries_import_no_service_and_no_tool():
    wrong = {}
    for path in modules("trenchcoat"):
        if "ops" in path.relative_to(ROOT / "trenchcoat").parts or path == ROOT / "trenchcoat" / "__main__.py":
            continue  # (``python -m trenchcoat`` is the command: it starts the tools, no library imports it)
        bad = sorted(m for m in imports_of(path) if top(m) in SERVICES or m.startswith("trenchcoat.ops"))
        if bad:
            wrong[str(path.relative_to(ROOT))] = bad
    assert not wrong, f"libraries importing services or tools: {wrong}"


def test_the_tools_import_no_service():
    wrong = {}
    for path in (ROOT / "trenchcoat" / "ops").rglob("*.py"):
        bad = sorted(m for m in imports_of(path) if top(m) in SERVICES)
        if bad:
            wrong[str(path.relative_to(ROOT))] = bad
    assert not wrong, f"tools importing a service (services meet the chassis only through the contract): {wrong}"


def test_the_check_sees_an_import_it_must_refuse(tmp_path):
    """The checks above would catch a violation: a lazy import of another service counts."""
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from store.volume import Volume\n    import f4.codec\n")
    assert {"store.volume", "store.volume.Volume", "f4.codec"} <= imports_of(sample)
