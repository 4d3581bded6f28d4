"""The suite's own layout: test modules share builders through tests/helpers.py
(and the gRPC fault proxy through tests/firestore_proxy.py, the machines of
tests/hosts through tests/hosts/machines.py), never by importing each other (or
conftest), so each reads on its own."""

import ast
from pathlib import Path

import pytest

# CI's PostgreSQL pass skips it, having run it in the defaults pass: reads the source tree only.
pytestmark = pytest.mark.same_on_every_database

TESTS = Path(__file__).resolve().parent
SHARED = {"tests.helpers", "tests.firestore_proxy", "tests.hosts.machines", "tests.hosts.site"}


def test_no_test_module_imports_another():
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            offenders += [
                f"{path.relative_to(TESTS.parent)}:{node.lineno} imports {name}"
                for name in names
                if (name == "tests" or name.startswith("tests.")) and name not in SHARED
            ]
    assert offenders == []
