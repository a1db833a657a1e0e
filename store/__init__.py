"""Store: the Haystack store machine. Append-only physical volumes of needles, an in-RAM
needle index, one disk read per photo, durable group-committed appends, deletes by flag,
compaction. Contract: ``proto/trenchcoat/v1/store.proto``. Not built yet.
"""
