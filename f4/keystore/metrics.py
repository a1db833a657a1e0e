"""The Prometheus metrics of f4's key store (beside the chassis's per-RPC ones)."""

from __future__ import annotations

from prometheus_client import Counter

KEYS_CREATED = Counter("trenchcoat_f4_keys_created_total",
                       "Blob keys made (a blob's first CreateKey; a repeat returns the same key and is not counted).")


KEYS_DISCARDED = Counter("trenchcoat_f4_keys_discarded_total",
                         "Blob keys discarded (blobs deleted for good), counted once each when the discard commits.")
