"""MkDocs hooks: the reference pages generated from the code, and the repository's own Markdown
files (SEMANTICS, FINDINGS, BENCHMARKS, CHANGELOG, CONTRIBUTING) included as they are.

A page asks for generated text with a marker, ``<!-- generated: NAME -->`` (``cli``,
``results-schema``, ``known-differences-format``, ``case-properties``, ``cases`` on a line of their own; ``case-count``
and ``covering-plan`` inside a sentence), for a Markdown file of the
repository with ``<!-- include: PATH -->``, or for a file shown as code (the examples, which the
tests run from ``examples/``) with ``<!-- code: PATH -->``. Nothing in the site is copied by hand from the code: the
command-line reference is the argparse parser itself, the schema page is
``results.schema.json``, the case counts are the fixtures' manifest. Links between the included
files are rewritten to the pages that hold them; a link to any other file of the repository
becomes its path in code (the site has no copy of it).
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"<!-- (generated|include|code): (\S+) -->")
# The repository's Markdown files and the pages that include them.
PAGES = {"README.md": "index.md", "SEMANTICS.md": "semantics.md", "FINDINGS.md": "findings.md",
         "BENCHMARKS.md": "benchmarks.md", "CHANGELOG.md": "project/changelog.md",
         "CONTRIBUTING.md": "project/contributing.md"}
LINK = re.compile(r"\[(?P<label>[^\]]*)\]\((?P<target>[^)#\s]+)(?P<anchor>#[^)\s]*)?\)")


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Each marker line replaced by what it names."""
    depth = page.file.src_uri.count("/")

    def expand(match: re.Match) -> str:
        kind, name = match.groups()
        if kind == "include":
            return include(name, depth)
        if kind == "code":
            return code(name)
        return GENERATORS[name]()

    return MARKER.sub(expand, markdown)


def include(path: str, depth: int) -> str:
    """A repository file's Markdown, its first heading dropped (the page has its own title) and its
    links pointed at the site's pages, relative to a page ``depth`` folders down; a link to a file
    the site does not hold becomes the file's path in code."""
    text = (ROOT / path).read_text(encoding="utf-8")
    text = re.sub(r"\A# .*\n", "", text)

    def relink(match: re.Match) -> str:
        label, target, anchor = match["label"], match["target"], match["anchor"] or ""
        if "://" in target or target.startswith("mailto:"):
            return match.group(0)
        if target in PAGES:
            return f"[{label}]({'../' * depth}{PAGES[target]}{anchor})"
        if target.startswith("docs/") and target.endswith(".md"):  # a page of this site
            return f"[{label}]({'../' * depth}{target.removeprefix('docs/')}{anchor})"
        return f"{label} (`{target}`)"

    return LINK.sub(relink, text)


def code(path: str) -> str:
    """A file of the repository (an example) as a fenced block, under its path: the very file the
    suite's tests run."""
    language = {".py": "python", ".txt": "text"}.get(Path(path).suffix, "text")
    return f"`{path}`:\n\n```{language}\n{(ROOT / path).read_text(encoding='utf-8').rstrip()}\n```\n"


# --- the command line ------------------------------------------------------------------------


def cli_reference() -> str:
    """Every command and subcommand of ``conformance``: its description, usage and options
    (flags, help, default), read from the parser ``conformance`` itself uses."""
    from conformance.commands.cli import build_parser

    parser = build_parser()
    return "\n".join(command_section(name, sub) for name, sub in subcommands(parser, "conformance"))


def subcommands(parser: argparse.ArgumentParser, prefix: str):
    """(full command name, parser) for every leaf command, in the parser's order."""
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not actions:
        yield prefix, parser
        return
    for name, sub in actions[0].choices.items():
        yield from subcommands(sub, f"{prefix} {name}")


def command_section(name: str, parser: argparse.ArgumentParser) -> str:
    rows = [option_row(action) for action in parser._actions if action.help != argparse.SUPPRESS]
    usage = parser.format_usage().removeprefix("usage: ").strip()
    lines = [f"## `{name}`", "", parser.description or "", "", "```text", usage, "```", "",
             "| option | what it does | default |", "| --- | --- | --- |", *rows, ""]
    return "\n".join(lines)


def option_row(action: argparse.Action) -> str:
    flags = ", ".join(f"`{f}`" for f in action.option_strings) or f"`{action.metavar or action.dest}`"
    if action.option_strings and action.nargs != 0:
        flags += f" `{action.metavar or action.dest.upper()}`"
    default = action.default
    shown = "" if default in (None, False, argparse.SUPPRESS) or action.nargs == 0 else f"`{default}`"
    text = (action.help or "").replace("%(default)s", str(default)).replace("|", "\\|").replace("\n", " ")
    return f"| {flags} | {text} | {shown} |"


# --- files of the suite ------------------------------------------------------------------------


def results_schema() -> str:
    """``results.schema.json`` as tables: the file's top level and one result record."""
    schema = json.loads((ROOT / "conformance/results/results.schema.json").read_text(encoding="utf-8"))
    parts = [schema.get("description", ""), "", "### The file", "", properties_table(schema)]
    for name, definition in sorted(schema.get("$defs", schema.get("definitions", {})).items()):
        if definition.get("properties"):
            parts += ["", f"### `{name}`", "", definition.get("description", ""), "", properties_table(definition)]
    parts += ["", "??? note \"The schema itself\"", "", "    ```json",
              *("    " + line for line in json.dumps(schema, indent=2).splitlines()), "    ```", ""]
    return "\n".join(parts)


def properties_table(schema: dict) -> str:
    required = set(schema.get("required", ()))
    rows = ["| field | type | required | meaning |", "| --- | --- | --- | --- |"]
    for name, prop in schema.get("properties", {}).items():
        kind = prop.get("type") or prop.get("$ref", "").rsplit("/", 1)[-1] or "any"
        kind = " or ".join(kind) if isinstance(kind, list) else kind
        meaning = " ".join(str(prop.get("description", "")).split()).replace("|", "\\|")
        rows.append(f"| `{name}` | {kind} | {'yes' if name in required else ''} | {meaning} |")
    return "\n".join(rows)


def known_differences_format() -> str:
    """The header of the built-in list, which states its format, as the list itself says it."""
    text = (ROOT / "conformance/verdict/known_differences.txt").read_text(encoding="utf-8")
    header = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        header.append(line.removeprefix("#").removeprefix(" "))
    entries = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return "\n".join(["```text", *header, "```", "",
                      f"The built-in list holds {len(entries)} entries today."])


def case_properties() -> str:
    """The properties a known-differences condition can name (``conformance.matrix.properties``)."""
    from conformance.matrix.properties import PROPERTIES

    rows = ["| property | kind | values | what it says |", "| --- | --- | --- | --- |"]
    for name, prop in PROPERTIES.items():
        kind = {bool: "true/false", int: "number", str: "name"}[prop.kind]
        values = ", ".join(f"`{value}`" for value in prop.values) or ("any" if prop.kind is str else "")
        rows.append(f"| `{name}` | {kind} | {values} | {prop.doc} |")
    return "\n".join(rows)


def cases() -> str:
    """The fixtures' cases counted by cell and by family option, from the manifest."""
    rows = manifest_rows()
    ids = [row["id"] for row in rows]
    by_cell = Counter(case_id.split("-")[0] for case_id in ids)
    dtypes = Counter(dtype for row in rows for dtype in row.get("dtypes", ["float32"]))
    lines = [f"{len(ids)} cases in the golden fixtures; {sum(dtypes.values())} case × dtype rows.", "",
             "| cell | cases |", "| --- | --- |", *(f"| `{cell}` | {n} |" for cell, n in sorted(by_cell.items())),
             "", "| dtype | cases |", "| --- | --- |", *(f"| `{d}` | {n} |" for d, n in sorted(dtypes.items())), ""]
    return "\n".join(lines)


def case_count() -> str:
    """The matrix's size as a sentence states it, counted from the fixtures' manifest."""
    rows = manifest_rows()
    return f"{len(rows)} cases ({sum(len(row.get('dtypes', ['float32'])) for row in rows)} case × dtype pairs)"


def covering_plan_size() -> str:
    """How many case × dtype pairs the covering plan holds, of how many: computed from the fixtures
    as ``conformance run`` computes it (seconds)."""
    from conformance.fixtures import load_cases
    from conformance.matrix.covering import covering_plan

    plan = covering_plan(load_cases())
    return f"{len(plan.pairs)} of the {len(plan.pairs) + len(plan.left_out)} pairs"


def manifest_rows() -> list[dict]:
    manifest = json.loads((ROOT / "fixtures/manifest.json").read_text(encoding="utf-8"))
    return manifest["cases"] if isinstance(manifest, dict) else manifest


GENERATORS = {"cli": cli_reference, "results-schema": results_schema,
              "known-differences-format": known_differences_format, "case-properties": case_properties,
              "cases": cases,
              "case-count": case_count, "covering-plan": covering_plan_size}
