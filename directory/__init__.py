"""Directory: maps logical volumes to physical replicas on store machines, places writes
across racks, spreads reads, flips volumes read-only when full or failed, tracks store
liveness (pitchfork) and schedules repair and hot->warm migration. State lives in etcd;
background work runs on the leader elected through etcd. Contract:
``proto/trenchcoat/v1/directory.proto``.
"""
