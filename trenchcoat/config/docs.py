"""The config's documentation, rendered from the declarations: the reference
(``trenchcoat config``), the commented example file (``trenchcoat.example.toml``) and
README's table. Each key's doc and default come from its ``setting()``."""

from __future__ import annotations

import dataclasses
from typing import Any

from trenchcoat.config.setting import doc_of
from trenchcoat.config.whole import section_types

EXAMPLE_PREAMBLE = """\
# trenchcoat cluster config: one file for the whole cluster, a section per service.
#
# Every process reads this file once at start and takes its own section. An environment
# variable TRENCHCOAT_<SECTION>__<KEY> overrides one key, e.g.
#   TRENCHCOAT_STORE__PORT=7301  TRENCHCOAT_ETCD__ENDPOINTS=10.0.0.5:2379,10.0.0.6:2379
# (lists from the environment are comma-separated). `trenchcoat up` gives each process its
# identity (ports, a store's machine_id and rack) that way, as Kubernetes does.
#
# Use it: cp trenchcoat.example.toml trenchcoat.toml (read from the current directory), or
# pass --config FILE, or set TRENCHCOAT_CONFIG=FILE. Unknown keys and bad values are errors
# that name the key. Every value below is the built-in default.
"""


def describe() -> list[tuple[str, str, str]]:
    """(section.key, default as TOML, doc) for every key: the config reference."""
    rows = []
    for name, cls in section_types().items():
        instance = cls()
        for f in dataclasses.fields(cls):
            rows.append((f"{name}.{f.name}", to_toml(getattr(instance, f.name)), doc_of(f)))
    return rows


def example_toml() -> str:
    """The commented example config (``trenchcoat config --example``): every key, its
    default and its meaning. ``trenchcoat.example.toml`` is exactly this."""
    import textwrap  # here, not at the top: every process imports the config, few render it

    lines = [EXAMPLE_PREAMBLE.rstrip("\n")]
    for name, cls in section_types().items():
        instance = cls()
        about = " ".join((cls.__doc__ or "").split())
        lines += ["", *textwrap.wrap(about, 88, initial_indent="# ", subsequent_indent="# "), f"[{name}]"]
        for f in dataclasses.fields(cls):
            lines += [f"# {line}" for line in textwrap.wrap(doc_of(f), 88)]
            lines.append(f"{f.name} = {to_toml(getattr(instance, f.name))}")
    return "\n".join(lines) + "\n"


def reference_markdown() -> str:
    """The config reference as a Markdown table (kept in README.md)."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    rows += [f"| `{key}` | `{default}` | {text.replace('|', '/')} |" for key, default, text in describe()]
    return "\n".join(rows) + "\n"


def to_toml(value: Any) -> str:
    """Formats a config value as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple):
        return "[" + ", ".join(to_toml(v) for v in value) + "]"
    return repr(value)
