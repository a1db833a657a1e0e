"""``trenchcoat top``: the dashboard's panels (``trenchcoat.ops.dashboard``) live in a terminal,
read from the cluster's Prometheus, for people without Grafana at hand. On a terminal the
table redraws in place every ``--every`` seconds (rich); in a pipe, or with ``--once``,
one plain-text frame is printed."""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from trenchcoat.errors import Unavailable
from trenchcoat.ops.dashboard import ROWS, Panel


@dataclass(frozen=True, slots=True)
class Reading:
    panel: Panel
    series: list[tuple[str, float]]
    """(legend, value) of each series, in label order."""
    error: str = ""


def query(base: str, expr: str, timeout_s: float = 5.0) -> list[tuple[dict[str, str], float]]:
    """An instant query's series: (labels, value)."""
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read() or b"{}")
        raise ValueError(body.get("error", f"HTTP {exc.code}")) from None
    except (OSError, ValueError) as exc:
        raise Unavailable(f"Prometheus at {base} did not answer ({exc}); is the cluster up with "
                          f"prometheus.enabled?") from None
    if body.get("status") != "success":
        raise ValueError(body.get("error", "query failed"))
    return [(item["metric"], float(item["value"][1])) for item in body["data"]["result"]]


def legend(template: str, labels: dict[str, str]) -> str:
    out = template
    for key, value in labels.items():
        out = out.replace("{{" + key + "}}", value)
    return out if "{{" not in out else ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


def read_all(base: str) -> list[tuple[str, list[Reading]]]:
    rows = []
    for row, panels in ROWS:
        readings = []
        for panel in panels:
            try:
                series = sorted((legend(panel.legend, labels), value) for labels, value in query(base, panel.expr))
                readings.append(Reading(panel, series))
            except ValueError as exc:
                readings.append(Reading(panel, [], str(exc)))
        rows.append((row, readings))
    return rows


def fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "-"
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    if unit in ("bytes", "Bps"):
        for suffix in ("B", "KiB", "MiB", "GiB"):
            if abs(value) < 1024:
                return f"{value:.1f} {suffix}" + ("/s" if unit == "Bps" else "")
            value /= 1024
        return f"{value:.1f} TiB" + ("/s" if unit == "Bps" else "")
    if unit == "reqps":
        return f"{value:.1f}/s"
    return f"{value:g}"


def plain(rows: list[tuple[str, list[Reading]]]) -> list[str]:
    """One frame as text lines (what a pipe gets)."""
    lines = []
    for row, readings in rows:
        lines.append(f"== {row}")
        for r in readings:
            if r.error:
                values = f"query failed: {r.error}"
            elif not r.series:
                values = "(no data yet)"
            else:
                values = "  ".join(f"{name} {fmt(value, r.panel.unit)}" for name, value in r.series)
            lines.append(f"   {r.panel.title:<46} {values}")
    return lines


def live(base: str, every_s: float, should_stop: Callable[[], bool]) -> None:
    """Redraws the frame in place until ``should_stop()`` (Ctrl-C)."""
    from rich.console import Group
    from rich.live import Live
    from rich.table import Table

    def frame() -> Group:
        tables = []
        for row, readings in read_all(base):
            table = Table(title=row, title_justify="left", expand=True, show_header=False)
            table.add_column("panel", ratio=2)
            table.add_column("values", ratio=3)
            for r in readings:
                values = (f"[red]query failed: {r.error}[/red]" if r.error else
                          "[dim](no data yet)[/dim]" if not r.series else
                          "  ".join(f"{name} [bold]{fmt(value, r.panel.unit)}[/bold]" for name, value in r.series))
                table.add_row(r.panel.title, values)
            tables.append(table)
        return Group(*tables)

    with Live(frame(), refresh_per_second=4, screen=False) as view:
        while not should_stop():
            time.sleep(every_s)
            view.update(frame())
