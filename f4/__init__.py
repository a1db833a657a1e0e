"""f4: the warm tier. Reed-Solomon(10,4) stripes of sealed hot volumes across failure
domains (``cell``, ``layout``, ``codec``), storage nodes (``storage``), backoff nodes
that rebuild one blob's ranges on the read path (``backoff``, ``reconstruct``), a
rebuilder that rebuilds whole blocks in the background, throttled (``rebuilder``,
``rebuild``), a key store (delete = discard the key: ``keystore``, ``crypto``) and XOR
geo-replication over three cells (``geo``). The front (``front``, ``python -m f4``)
encodes, reads and deletes. Contract: ``proto/trenchcoat/v1/f4.proto``.
"""
