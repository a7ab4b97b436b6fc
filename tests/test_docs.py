"""Docs stay true: example specs validate, every documented command exists, README's two commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from blockforge_app.cli import COMMAND_MODULES, build_parser
from blockforge.spec import spec_from_dict

DOCS = Path(__file__).resolve().parents[1] / "docs"
README = DOCS.parent / "README.md"


def yaml_blocks(text: str) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", text, re.S)


@pytest.mark.parametrize("page", ["spec.md", "accelerator.md"])
def test_example_specs_in_docs_validate(page):
    specs = [yaml.safe_load(b) for b in yaml_blocks((DOCS / page).read_text())]
    specs = [s for s in specs if isinstance(s, dict) and "block" in s]
    assert specs, page
    for data in specs:
        spec_from_dict(data, source=page)


def test_every_documented_command_exists():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    commands = set(subparsers.choices)
    documented = set(re.findall(r"^\| `([a-z-]+)", (DOCS / "cli.md").read_text(), re.M))
    assert documented and documented <= commands, documented - commands
    assert {"spec", "prune", "evaluate", "export", "inspect", "hw", "sim", "estimate", "report", "run",
            "demo"} <= commands
    assert len(COMMAND_MODULES) == len(set(COMMAND_MODULES))


def test_readme_gives_the_two_commands_and_links_docs():
    text = README.read_text()
    assert "make demo" in text and "make test" in text
    for link in re.findall(r"\]\((docs/[^)]+)\)", text):
        assert (README.parent / link).exists(), link


def test_docs_links_resolve():
    for page in DOCS.glob("*.md"):
        for link in re.findall(r"\]\(([a-z-]+\.md)(?:#[^)]*)?\)", page.read_text()):
            assert (DOCS / link).exists(), f"{page.name} links to missing {link}"
