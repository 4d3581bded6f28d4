"""The docs name paths that exist: a path written in the README or in docs/
(in backticks, or in a Markdown link) is a file or folder of this tree."""

import re
from pathlib import Path

import pytest

# CI's PostgreSQL pass skips it, having run it in the defaults pass: reads the source tree only.
pytestmark = pytest.mark.same_on_every_database

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FOLDERS = (
    "revassure",
    "reconciliation",
    "backfill",
    "jobs",
    "settlement",
    "snapshots",
    "cutover",
    "observability",
    "wallets",
    "demo",
    "devtools",
    "templates",
    "tests",
    "bench",
    "docs",
    "scripts",
    "static",
)
# A path of ours: starts with one of our folders (or is a top-level file we keep).
TOP_LEVEL = (
    "README.md",
    "firestore.rules",
    "firestore.indexes.json",
    "pyproject.toml",
    "requirements.txt",
    "requirements-dev.txt",
    "package.json",
    "Makefile",
    "Dockerfile",
    "gunicorn.conf.py",
    "manage.py",
)
# Below our folders, a file (with its extension) or a folder (with its slash): `wallets/u1` is a
# Firestore path, not ours.
PATH = re.compile(
    r"^(?:(?:"
    + "|".join(FOLDERS)
    + r")/(?:[\w./-]*\.\w+|[\w./-]*/)?|"
    + "|".join(map(re.escape, TOP_LEVEL))
    + ")$"
)
TICKED = re.compile(r"`([^`\s]+)`")
LINKED = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def named_paths(doc: Path) -> set[str]:
    text = doc.read_text()
    found = set(TICKED.findall(text))
    found |= {
        (doc.parent / link).resolve().relative_to(ROOT).as_posix()
        for link in LINKED.findall(text)
        if "://" not in link and not link.startswith("mailto:")
    }
    return {name.split(":")[0].rstrip(".,") for name in found if PATH.match(name.split(":")[0].rstrip(".,"))}


def test_every_path_the_docs_name_exists():
    missing = [
        f"{doc.relative_to(ROOT)} names {name}"
        for doc in DOCS
        for name in sorted(named_paths(doc))
        if "*" not in name and "{" not in name and not (ROOT / name).exists()
    ]
    assert missing == []


def test_the_readme_layout_names_every_app():
    layout = (ROOT / "README.md").read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^    ([\w-]+)/", layout, re.MULTILINE))
    assert set(FOLDERS) - {"static"} <= listed
