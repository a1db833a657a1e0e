"""trenchcoat.config.docs: the reference, the example file and README's table, rendered from the
declarations and kept in step with the files in the repo."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from trenchcoat import config
from trenchcoat.config.whole import section_types

EXAMPLE = Path(__file__).resolve().parents[3] / "trenchcoat.example.toml"


def test_example_config_is_the_generated_one():
    assert EXAMPLE.read_text() == config.example_toml(), (
        "trenchcoat.example.toml is stale: .venv/bin/trenchcoat config --example > trenchcoat.example.toml"
    )


def test_example_config_documents_every_key():
    text = EXAMPLE.read_text()
    for key, default, doc in config.describe():
        section, name = key.split(".")
        assert f"[{section}]" in text
        assert f"\n{name} = {default}\n" in text, key
        assert doc.split()[0] in text


def test_every_field_has_a_docstring():
    for name, cls in section_types().items():
        for f in dataclasses.fields(cls):
            assert f.metadata.get("doc"), f"{name}.{f.name} has no doc"


def test_readme_holds_the_current_config_reference():
    readme = (EXAMPLE.parent / "README.md").read_text()
    assert config.reference_markdown() in readme, (
        "README's config table is stale: paste in trenchcoat.config.reference_markdown()"
    )
