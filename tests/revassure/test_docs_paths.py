"""The README and docs/ name files and folders of this tree as they are.

Every path that starts at a top-level entry of the repository and names a
file (`revassure/firestore/gateway.py`, `bench/bench.py:12`,
`tests/settlement/test_credits.py::test_x`, or docs/scaling.md in prose) or,
in backticks, a folder (`tests/hosts/`) must exist. Firestore paths
(`wallets/u1/ledger/e1`) name no file and no folder here, so they are left alone."""

import re
from pathlib import Path

import pytest

# CI's PostgreSQL pass skips it, having run it in the defaults pass: reads the source tree only.
pytestmark = pytest.mark.same_on_every_database

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TOP_LEVEL = {path.name for path in ROOT.iterdir()}
QUOTED = re.compile(r"`([^`\s]+)`")
EXTENSIONS = "py|md|sh|js|json|toml|txt|yml|yaml|html|css|cfg|ini|conf|csv|jsonl"
# A file named in prose: at least one folder, and an extension.
IN_PROSE = re.compile(rf"(?<![\w/.`-])((?:[\w-]+/)+[\w.-]+\.(?:{EXTENSIONS}))\b")
PATH = re.compile(r"\.?[\w-]+(?:/[\w.-]+)*/?")
FILE_OR_FOLDER = re.compile(rf"(/|\.({EXTENSIONS}))$")


def named_paths(text: str) -> list[tuple[int, str]]:
    """(line, path) of every path of this tree a document names."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for quoted in QUOTED.findall(line):
            path = re.sub(r"(::\w+|:\d+(-\d+)?(,\s*\d+(-\d+)?)*)$", "", quoted)
            if PATH.fullmatch(path) and path.split("/")[0] in TOP_LEVEL and FILE_OR_FOLDER.search(path):
                found.append((number, path))
        for path in IN_PROSE.findall(QUOTED.sub("", line)):
            if path.split("/")[0] in TOP_LEVEL:
                found.append((number, path))
    return found


def test_every_path_the_docs_name_exists():
    named = {doc: named_paths(doc.read_text()) for doc in DOCS}
    missing = [
        f"{doc.relative_to(ROOT)}:{number}: {path}"
        for doc, paths in named.items()
        for number, path in paths
        if not (ROOT / path).exists()
    ]

    assert missing == []
    assert sum(map(len, named.values())) > 50  # it reads the paths the docs do name (106 today)


def test_a_path_that_is_not_in_the_tree_is_found():
    text = (
        "see `revassure/firestore/gateway.py:40` and `bench/no_such_part.py`, not `wallets/u1/ledger/e1`;"
        " docs/no-such-guide.md says so"
    )

    paths = [path for _, path in named_paths(text)]

    assert paths == ["revassure/firestore/gateway.py", "bench/no_such_part.py", "docs/no-such-guide.md"]
    assert [path for path in paths if not (ROOT / path).exists()] == [
        "bench/no_such_part.py",
        "docs/no-such-guide.md",
    ]
