"""trenchcoat/ops/dashboard.py: the Grafana dashboard file is generated from the panels, and
every panel's query parses."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from trenchcoat.ops import dashboard

DASHBOARD = Path(__file__).resolve().parents[2] / "k8s" / "observability" / "dashboard.json"


def test_the_dashboard_file_is_current():
    assert DASHBOARD.read_text() == dashboard.render(), (
        "k8s/observability/dashboard.json is stale: .venv/bin/python -m trenchcoat.ops.dashboard > "
        "k8s/observability/dashboard.json")
    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p.get("targets", ())]
    assert exprs == [p.expr for p in dashboard.PANELS]


def test_every_panel_query_parses(tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: `make test` installs Debian's prometheus"
    for panel in dashboard.PANELS:  # promtool checks a query's syntax when it lints it as a rule
        rules = tmp_path / "panel.yml"
        rules.write_text(json.dumps({"groups": [{"name": "g", "rules": [{"record": "panel:check", "expr": panel.expr}]}]}))
        result = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, (panel.title, result.stdout + result.stderr)
