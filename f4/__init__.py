"""f4: the warm tier. Reed-Solomon(10,4) stripes of sealed hot volumes across failure
domains, storage nodes, backoff nodes (online reconstruction of one blob), rebuilder
nodes (throttled whole-block rebuild), a key store (delete = discard the key) and XOR
geo-replication. Contract: ``proto/trenchcoat/v1/f4.proto``. Not built yet.
"""
