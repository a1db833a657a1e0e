"""Generated gRPC stubs for the ``trenchcoat.v1`` contract (``proto/trenchcoat/v1/``).

Everything here except this file is written by ``python -m trenchcoat.protogen``; do not
edit it by hand. Only servicers and clients import these modules: below the servicer,
code speaks in domain types.
"""
