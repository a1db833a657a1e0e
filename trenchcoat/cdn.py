"""``python -m trenchcoat.cdn``: the pull CDN as its own process (its Kubernetes workload).

Writes nginx's config from the cluster config (``[cdn]``: port, TTLs, size, and the caches'
photo HTTP addresses, cache id i + 1 at position i) under ``<cluster.data_dir>/cdn``, waits
until every cache's host name resolves (nginx resolves them once, at start, and refuses to
start on a name it cannot resolve), then becomes nginx in the foreground. ``trenchcoat up``
runs the same config through ``procs.nginx_process``.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

from trenchcoat import procs, server

RESOLVE_WAIT_S = 300.0


def main(argv: list[str] | None = None) -> int:
    config = server.load_config("trenchcoat.cdn", "The pull CDN (nginx) in front of the caches.", argv)
    cdn, caches = config.cdn, config.cache_http_endpoints()
    if not wait_resolvable(caches, RESOLVE_WAIT_S):
        return 1
    conf = procs.nginx_conf(Path(config.cluster.data_dir).resolve() / "cdn", config.cluster.host, cdn.port, caches,
                            ttl_s=cdn.ttl_s, not_found_ttl_s=cdn.not_found_ttl_s, max_bytes=cdn.max_bytes)
    argv_nginx = procs.nginx_argv(conf)
    print(f"trenchcoat.cdn: nginx on {config.cluster.host}:{cdn.port} in front of {', '.join(caches)}",
          file=sys.stderr, flush=True)
    os.execv(argv_nginx[0], argv_nginx)


def wait_resolvable(endpoints: tuple[str, ...], timeout_s: float) -> bool:
    """Waits until every endpoint's host resolves; says which it waits for."""
    deadline = time.monotonic() + timeout_s
    said: set[str] = set()
    while True:
        missing = []
        for endpoint in endpoints:
            host = endpoint.rpartition(":")[0]
            try:
                socket.getaddrinfo(host, None)
            except OSError:
                missing.append(host)
        if not missing:
            return True
        if time.monotonic() > deadline:
            print(f"trenchcoat.cdn: {', '.join(missing)} did not resolve in {timeout_s:.0f}s; "
                  "check cdn.cache_endpoints and the caches' Services", file=sys.stderr)
            return False
        for host in set(missing) - said:
            print(f"trenchcoat.cdn: waiting for {host} to resolve", file=sys.stderr, flush=True)
        said |= set(missing)
        time.sleep(1.0)


if __name__ == "__main__":
    sys.exit(main())
