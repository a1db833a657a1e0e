"""store/errors.py: every error class the store raises is declared (or re-exported) there,
each saying when it is raised, and travels as a chassis class."""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

from store import errors
from trenchcoat.errors import TrenchcoatError, wire_name

STORE = Path(errors.__file__).parent


def raised_names(path: Path) -> set[str]:
    """Names of the classes ``path`` raises (``raise X(...)`` or ``raise X``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(target, ast.Name) and target.id[:1].isupper():
                found.add(target.id)
    return found


def test_every_error_the_store_raises_is_in_its_errors_module():
    stray = {}
    for path in sorted(STORE.glob("*.py")):
        # OSError and ValueError are the OS's and a broken invariant's (the group commit
        # turns a failed fdatasync into DiskFailure); every typed error is store.errors'.
        names = {n for n in raised_names(path) if not hasattr(builtins, n)}
        if names - set(errors.__all__):
            stray[path.name] = sorted(names - set(errors.__all__))
    assert not stray, f"raised but not in store/errors.py: {stray}"


def test_each_store_error_says_when_it_is_raised_and_has_a_wire_name():
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, TrenchcoatError), name
        assert (cls.__doc__ or "").startswith("Raised when"), name
        assert wire_name(cls("x")) != TrenchcoatError.__name__, name
