"""The layers, read from the source with `ast`.

- The core (revassure/) imports no app: arrows point from the apps to the core.
  revassure/urls.py is the exception by design: wiring the apps' views into
  the project's URLs is its job (settings.py names the apps too, but as strings
  in INSTALLED_APPS, not as imports). Dotted task paths handed to django-q2
  ("reconciliation.tasks.start_run") are strings, not imports, and are fine.
- No module imports inside a function unless a comment says why, on the line
  above (the comment block directly above) or on the same line: `# why: ...`.
  An import hidden in a function usually dodges a cycle, and the cycle is the
  thing to fix.
"""

import ast
import re
from pathlib import Path

import pytest

# CI's PostgreSQL pass skips it, having run it in the defaults pass: reads the source tree only.
pytestmark = pytest.mark.same_on_every_database

ROOT = Path(__file__).resolve().parent.parent
APPS = (
    "reconciliation",
    "backfill",
    "jobs",
    "wallets",
    "observability",
    "snapshots",
    "cutover",
    "settlement",
)
WIRING = {"revassure/urls.py"}
WHY = re.compile(r"#\s*why:", re.IGNORECASE)


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def modules(package: str) -> list[Path]:
    found = sorted((ROOT / package).rglob("*.py"))
    assert found, f"no modules found in {package}/: the test would pass on nothing"
    return found


def _imported_modules(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        return [node.module or ""] if node.level == 0 else []
    if (
        isinstance(node, ast.Call)
        and (getattr(node.func, "attr", None) or getattr(node.func, "id", None))
        in ("import_module", "__import__")
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return [node.args[0].value]
    return []


def app_imports(source: str, name: str = "<source>") -> list[str]:
    """`name:line imports module` for every import of an app in the source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        for module in _imported_modules(node):
            if module.split(".")[0] in APPS:
                found.append(f"{name}:{node.lineno} imports {module}")
    return found


def unexplained_function_imports(source: str, name: str = "<source>") -> list[str]:
    """`name:line` for every import inside a function without a `# why:` comment
    on the same line or in the comment block directly above it."""
    lines = source.splitlines()
    found = set()
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Import | ast.ImportFrom) and not _explained(lines, node.lineno):
                found.add((node.lineno, f"{name}:{node.lineno} {lines[node.lineno - 1].strip()}"))
    return [text for _, text in sorted(found)]


def _explained(lines: list[str], lineno: int) -> bool:
    if WHY.search(lines[lineno - 1]):
        return True
    above = lineno - 2
    while above >= 0 and lines[above].strip().startswith("#"):
        if WHY.search(lines[above]):
            return True
        above -= 1
    return False


def test_the_core_imports_no_app():
    found = []
    for path in modules("revassure"):
        if _relative(path) not in WIRING:
            found += app_imports(path.read_text(), _relative(path))
    assert not found, "the core must not import the apps built on it:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "package",
    [
        "revassure",
        "reconciliation",
        "jobs",
        "backfill",
        "wallets",
        "observability",
        "snapshots",
        "settlement",
    ],
)
def test_no_import_hides_in_a_function_without_saying_why(package):
    found = []
    for path in modules(package):
        found += unexplained_function_imports(path.read_text(), _relative(path))
    assert not found, (
        "imports inside functions (fix the cycle, or say why on the line above with '# why:'):\n"
        + "\n".join(found)
    )


def test_the_checks_see_what_they_are_meant_to_see():
    source = """
import backfill.rules
from reconciliation import services
from . import sibling
from django.conf import settings


def hidden():
    from backfill import tasks

    importlib.import_module("jobs.views")


def explained():
    # why: the documented place for it
    # (a comment block may run over lines)
    from revassure import checks  # noqa: F401
    import os  # why: on the same line


def run_later():
    async_task("reconciliation.tasks.start_run", 1)
"""
    assert app_imports(source) == [
        "<source>:2 imports backfill.rules",
        "<source>:3 imports reconciliation",
        "<source>:9 imports backfill",
        "<source>:11 imports jobs.views",
    ]
    assert unexplained_function_imports(source) == ["<source>:9 from backfill import tasks"]


# The gateway is the seam to Firestore: its library, its errors and its wire types.
FIRESTORE_LIBRARIES = ("google.api_core", "google.cloud.firestore", "google.protobuf", "grpc")


def test_only_the_gateway_speaks_firestores_libraries():
    found = []
    for package in ("revassure", *APPS):
        for path in modules(package):
            name = _relative(path)
            if name.startswith("revassure/firestore/"):
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                for module in _imported_modules(node):
                    if module.startswith(FIRESTORE_LIBRARIES):
                        found.append(f"{name}:{node.lineno} imports {module}")
    assert found == [], "only revassure/firestore/ may: " + "; ".join(found)
