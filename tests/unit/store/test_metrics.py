"""store/metrics.py: every Prometheus metric of the store is declared there, and the
per-volume gauges are read from the volumes at scrape time."""

from __future__ import annotations

import ast
from pathlib import Path

from store import metrics
from store.volume_load import create_volume
from tests.unit.store.volume_helpers import LIMITS, n

STORE = Path(metrics.__file__).parent


def imports_prometheus(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        if any(name.split(".")[0] == "prometheus_client" for name in names):
            return True
    return False


def test_only_the_metrics_module_declares_prometheus_metrics():
    assert sorted(p.name for p in STORE.glob("*.py") if imports_prometheus(p)) == ["metrics.py"]


async def test_the_volume_gauges_are_read_from_the_volumes_at_scrape_time(tmp_path, executor):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    collector = metrics.VolumeCollector(lambda: [v])
    await v.write(n(1, 0, 1), b"x" * 100)
    await v.write(n(2, 0, 2), b"y" * 100)
    await v.delete(n(2, 0, 2))
    await v.read(n(1, 0, 1))
    samples = {s.name: s.value for family in collector.collect() for s in family.samples}
    assert samples["trenchcoat_store_needles"] == 1 and samples["trenchcoat_store_deleted_needles"] == 1
    assert samples["trenchcoat_store_live_bytes"] == v.stats.live_bytes
    assert samples["trenchcoat_store_dead_bytes"] == v.dead_bytes > 0
    assert samples["trenchcoat_store_preads_total"] == v.io.preads >= 1
    assert samples["trenchcoat_store_volume_read_only"] == 0
