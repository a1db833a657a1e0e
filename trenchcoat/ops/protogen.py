"""Generates the Python stubs in ``trenchcoat/v1/`` from ``proto/trenchcoat/v1/*.proto``.

Run ``python -m trenchcoat.ops.protogen`` (or ``make proto``) after editing a ``.proto``. The
generated ``*_pb2.py``, ``*_pb2.pyi`` and ``*_pb2_grpc.py`` files are committed so that a
plain install needs no code generator; ``tests/unit/test_contract.py`` fails when they
differ from a fresh generation. Needs the ``dev`` extra (``grpcio-tools``).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO_ROOT / "proto"
PACKAGE_DIR = Path("trenchcoat") / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files() -> list[Path]:
    """The contract's .proto files, relative to ``proto/``."""
    return sorted(p.relative_to(PROTO_ROOT) for p in (PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))


def generate(out_root: Path) -> list[Path]:
    """Writes the stubs under ``out_root/trenchcoat/v1/`` and returns their paths."""
    import grpc_tools
    from grpc_tools import protoc  # dev dependency: imported only when generating

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    out_root.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *(str(p) for p in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed; see the messages above")
    return generated_files(out_root)


def generated_files(root: Path) -> list[Path]:
    """The generated stub files present under ``root/trenchcoat/v1/``."""
    return sorted(
        p for p in (root / PACKAGE_DIR).iterdir() if p.name.endswith(GENERATED_SUFFIXES)
    )


def main() -> int:
    for stale in generated_files(REPO_ROOT):
        stale.unlink()
    written = generate(REPO_ROOT)
    print(f"generated {len(written)} files in {PACKAGE_DIR}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
