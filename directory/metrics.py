"""The Prometheus metrics of the directory (beside the chassis's per-RPC ones): its leader's probes, repairs, growth and moves into f4."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

MIGRATIONS = Counter("trenchcoat_directory_f4_migrations_total",
                     "Steps of moving volumes into f4, by step (sealed, encoded, warm, freed) and outcome.",
                     ["step", "outcome"])


MIGRATING = Gauge("trenchcoat_directory_f4_migrating", "Volumes sealed and not yet warm (being moved into f4).")


IS_LEADER = Gauge("trenchcoat_directory_is_leader", "1 while this directory process is the elected leader.")


PROBES = Counter("trenchcoat_directory_probes_total", "Store probes by outcome.", ["outcome"])


STORES_DOWN = Counter("trenchcoat_directory_stores_marked_down_total", "Stores marked down by the pitchfork.")


VOLUMES_CREATED = Counter("trenchcoat_directory_volumes_created_total", "Logical volumes created.")


PLACEMENT_FAILURES = Counter(
    "trenchcoat_directory_placement_failures_total", "Volume creations refused for want of racks."
)


REPAIRS = Counter("trenchcoat_directory_repairs_total", "Replica repairs by outcome.", ["outcome"])


REPAIRED_BYTES = Counter("trenchcoat_directory_repaired_bytes_total", "Bytes copied by replica repairs.")


WRITABLE = Gauge("trenchcoat_directory_writable_volumes",
                 "Writable logical volumes in the map, as the leader saw it at its last growth pass.")


MIN_WRITABLE = Gauge("trenchcoat_directory_min_writable_volumes",
                     "directory.min_writable_volumes: the leader grows volumes while fewer are writable.")


DAMAGED_NEEDLES = Gauge("trenchcoat_directory_damaged_needles",
                        "Needles some replica reported damaged, not yet repaired (the leader's last look).")


UNRECOVERABLE_NEEDLES = Gauge("trenchcoat_directory_unrecoverable_needles",
                              "Needles damaged on every replica: reads answer DATA_LOSS; listed by trenchcoat volumes.")


NEEDLE_REPAIRS = Counter("trenchcoat_directory_needle_repairs_total",
                         "Needle repairs the leader asked for, by outcome (repaired, healthy, source_damaged, "
                         "whole_volume, failed).", ["outcome"])


NEEDLE_REPAIRED_BYTES = Counter("trenchcoat_directory_needle_repaired_bytes_total",
                                "Bytes rewritten in place by needle repairs.")


UNDER_REPLICATED = Gauge("trenchcoat_directory_under_replicated_volumes",
                         "Hot volumes with a replica on a store that is down (the leader's last look).")


REREPLICATIONS = Counter("trenchcoat_directory_rereplications_total",
                         "New replicas made for copies on stores lost for good, by outcome (done, failed, "
                         "abandoned: the lost store came back).", ["outcome"])


REREPLICATING = Gauge("trenchcoat_directory_rereplicating_volumes",
                      "Volumes whose replica on a lost store is being replaced now.")


REREPLICATED_BYTES = Counter("trenchcoat_directory_rereplicated_bytes_total",
                             "Bytes copied to new replicas replacing copies on lost stores.")


STALE_FREED = Counter("trenchcoat_directory_stale_copies_freed_total",
                      "Copies freed on a store that came back after its volumes were re-replicated elsewhere.")
ORPHANS_FREED = Counter("trenchcoat_directory_orphan_copies_freed_total",
                        "Empty copies of volume ids whose creation failed part way (never in the map), freed.")
UNKNOWN_COPIES = Gauge("trenchcoat_directory_unknown_copies",
                       "Copies stores hold of volumes the map does not know that hold needles, or of ids this "
                       "cluster never handed out: never freed by the directory, left for an operator.")
