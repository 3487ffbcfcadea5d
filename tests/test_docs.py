"""The documentation stays whole: every guide is in the site's navigation, every library
module has an API page, the README stays short, and no page tells the project's history
(that is CHANGELOG.md's)."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
HISTORY = re.compile(r"\b(session|sessions|issue \d+|issues? #?\d+ of ours)\b", re.I)


def test_every_guide_is_in_the_site_navigation():
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert [p for p in pages if p not in nav] == []


@pytest.mark.parametrize("package", ["refnet", "refnet/nodes", "layers", "data"])
def test_every_library_module_has_an_api_entry(package):
    page = (DOCS / "api" / f"{package.split('/')[-1]}.md").read_text()
    modules = sorted(
        p.stem for p in (ROOT / package).glob("*.py") if p.stem not in ("__init__", "__main__")
    )
    dotted = "refnet." + package if package in ("layers", "data") else package.replace("/", ".")
    assert [m for m in modules if f"::: {dotted}.{m}\n" not in page] == []


def test_the_readme_is_short_and_starts_with_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150
    commands = [line.strip() for line in lines if line.startswith("    pip install")]
    assert commands[:2] == [
        "pip install -e . && python -m refnet.train",
        'pip install -e ".[test]" && python -m pytest',
    ]


@pytest.mark.parametrize("path", ["README.md", *sorted(p.name for p in DOCS.glob("*.md"))])
def test_no_page_tells_the_history_of_the_work(path):
    text = (ROOT / path if path == "README.md" else DOCS / path).read_text()
    assert HISTORY.findall(text) == []


def test_the_reading_path_is_at_most_six_files_and_1500_lines():
    """docs/reading.md's table names the files a reader walks; their lines are counted."""
    text = (DOCS / "reading.md").read_text()
    files = re.findall(r"^\| \d \| `([^`]+)` \|", text, re.M)
    lines = sum(len((ROOT / f).read_text().splitlines()) for f in files)
    assert 1 <= len(files) <= 6 and lines <= 1500, (files, lines)
    assert f"**{lines:,} lines**" in text  # the count the page states is true
