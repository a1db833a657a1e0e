"""Cache: the internal CDN keyed by photo id, and the server of photo URLs over HTTP (what
the CDN pulls from; no database asked). Admits only reads that came straight from a user
(not the CDN) for photos on write-enabled volumes; leases let one caller per key fill a
miss while the others wait. Contract: ``proto/trenchcoat/v1/cache.proto``.
"""
