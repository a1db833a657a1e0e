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


METRIC_CALLS = {"Counter", "Gauge", "Histogram", "Summary"}
ERROR_BASES = {"TrenchcoatError", "Unavailable", "NotFound", "InvalidArgument", "FailedPrecondition",
               "AlreadyExists", "DataLoss", "Internal", "PermissionDenied", "OutOfRange"}


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_package_has_the_one_shape(service):
    """``__main__`` starts it, ``service.py`` is its servicer, its errors and metrics live in
    ``errors.py`` and ``metrics.py`` (a package of several processes, f4, may keep a pair in a
    process's own subpackage), and nowhere else."""
    root = ROOT / service
    assert {"__main__.py", "service.py", "errors.py", "metrics.py"} <= {p.name for p in root.iterdir()}, service
    misplaced = []
    for path in modules(service):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                    and getattr(node.value.func, "id", "") in METRIC_CALLS and path.name != "metrics.py":
                misplaced.append(f"{path.relative_to(ROOT)}: metric {ast.unparse(node.targets[0])}")
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", "") in ERROR_BASES for b in node.bases) \
                    and path.name != "errors.py":
                misplaced.append(f"{path.relative_to(ROOT)}: error {node.name}")
    assert not misplaced, misplaced
