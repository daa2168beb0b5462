"""Every command explains itself: each subcommand's --help opens with a description, and every option
and argument has a help text that ends with its default where it has one."""

from __future__ import annotations

import argparse

import pytest

from conformance.commands.cli import build_parser


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_every_subcommand_has_a_description_and_every_option_a_help_text(name):
    parser = subcommands()[name]
    assert parser.description, f"conformance {name} --help has no description"
    undocumented = [a.dest for a in parser._actions if not isinstance(a, argparse._HelpAction) and not a.help]
    assert undocumented == [], f"conformance {name}: options without help: {undocumented}"


def test_an_option_with_a_default_shows_it_in_its_help():
    text = subcommands()["run"].format_help()
    assert "reported as skipped (default: auto)" in " ".join(text.split())
    assert "(default: reports)" in text and "(default: )" not in text
