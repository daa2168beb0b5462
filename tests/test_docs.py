"""The manual's shape: a README of one screen, and no relative link in it or in the site's pages
that leads nowhere (``mkdocs build --strict`` checks the site's own links too, but not README.md,
which GitHub shows as the project's front page)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
PAGES = sorted((REPO / "docs").rglob("*.md"))
# [label](target) and ![alt](target), the target up to a space, a closing bracket or an anchor.
LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s#]*)(?:#[^)\s]*)?(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
README_MAX_LINES = 120


def relative_targets(page: Path) -> list[str]:
    """The relative link targets of a Markdown page, code blocks and inline code left out."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)
    targets = [match["target"] for match in LINK.finditer(text)]
    return [t for t in targets if t and "://" not in t and not t.startswith("mailto:")]


def test_the_readme_is_one_screen():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= README_MAX_LINES


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_points_at_a_file_of_the_repository(page):
    missing = [target for target in relative_targets(page) if not (page.parent / target).exists()]
    assert not missing, f"{page.relative_to(REPO)} links to missing files: {missing}"


def test_the_link_reader_sees_links_and_images_but_not_code(tmp_path):
    """The check can fail: a page with a link to a missing file, an image and a link in code."""
    page = tmp_path / "page.md"
    page.write_text("[a](missing.md#part) ![b](images/shot.png) `[c](in-code.md)` [d](https://x.org)\n"
                    "```\n[e](in-fence.md)\n```\n", encoding="utf-8")
    assert relative_targets(page) == ["missing.md", "images/shot.png"]
