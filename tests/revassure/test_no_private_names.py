"""No private name from another package anywhere in the project.

A name with a leading underscore (the client's firestore_api attribute, a
response's pb, firestore_v1's helpers module, each with its underscore) is an implementation detail of its
package: a patch release can move it, and the break shows at first use, in
production. Read from the source (AST), so a comment or a docstring that names
one is fine, but code that uses one is not:

- an import of a module or name starting with `_` from another package;
- an attribute `x._name` (or `getattr(x, "_name")`) where `_name` is defined
  nowhere in the project's own code, so it can only belong to a library;
  a few names other libraries document as public despite the underscore are
  allowed by name below.
"""

import ast
from pathlib import Path

import pytest

# CI's PostgreSQL pass skips it, having run it in the defaults pass: reads the source tree only.
pytestmark = pytest.mark.same_on_every_database

ROOT = Path(__file__).resolve().parents[2]
SKIP = {".venv", "node_modules", ".git", "staticfiles", ".demo", ".bench", "__pycache__"}
# Underscored, yet documented public API of their library.
DOCUMENTED_PUBLIC = {
    "_meta",  # Django: Model._meta, the model _meta API
    "_exit",  # os._exit
    "_asdict",  # namedtuple
    "_replace",  # namedtuple
    "_fields",  # namedtuple
    "_make",  # namedtuple
}


def project_files() -> list[Path]:
    return sorted(path for path in ROOT.rglob("*.py") if not SKIP.intersection(path.relative_to(ROOT).parts))


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def defined_names(trees: dict[Path, ast.AST]) -> set[str]:
    """Every name the project's own code defines: functions, classes, arguments,
    variables, attributes it assigns, keyword arguments it passes."""
    names = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.alias) and node.asname:
                names.add(node.asname)
    return names


def own_modules() -> set[str]:
    return {path.name for path in ROOT.iterdir() if path.is_dir() and (path / "__init__.py").exists()} | {
        path.stem for path in ROOT.glob("*.py")
    }


def uses_of_private_names(path: Path, tree: ast.AST, ours: set[str], own: set[str]) -> list[str]:
    found = []

    def foreign(module: str) -> bool:
        return module.split(".")[0] not in own

    for node in ast.walk(tree):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if foreign(alias.name) and any(private(part) for part in alias.name.split(".")):
                    found.append(f"{where}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and foreign(node.module):
            parts = node.module.split(".")
            for alias in node.names:
                if any(private(part) for part in parts) or private(alias.name):
                    found.append(f"{where}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.Attribute) and private(node.attr):
            if node.attr not in ours and node.attr not in DOCUMENTED_PUBLIC:
                found.append(f"{where}: .{node.attr}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and private(node.args[1].value)
            and node.args[1].value not in ours
        ):
            found.append(f"{where}: {node.func.id}(..., {node.args[1].value!r})")
    return found


def test_the_check_sees_what_it_looks_for():
    # The private names are assembled here, so this file does not spell out what it forbids.
    u = "_"
    source = (
        f"from google.cloud.firestore_v1 import {u}helpers\n"
        f"import google.cloud.{u}helpers\n"
        f"api = client.{u}firestore_api\n"
        f"raw = getattr(response, '{u}pb')\n"
        "class Mine:\n"
        "    def __init__(self):\n"
        "        self._lock = None\n"
        "        self._lock.acquire()\n"
    )
    tree = ast.parse(source)
    ours = defined_names({ROOT / "example.py": tree})
    found = uses_of_private_names(ROOT / "example.py", tree, ours, own_modules())
    assert [use.split(": ", 1)[1] for use in found] == [
        f"from google.cloud.firestore_v1 import {u}helpers",
        f"import google.cloud.{u}helpers",
        f".{u}firestore_api",
        f"getattr(..., '{u}pb')",
    ]


def test_no_private_name_of_another_package_is_used_anywhere_in_the_project():
    trees = {path: ast.parse(path.read_text(), str(path)) for path in project_files()}
    ours, own = defined_names(trees), own_modules()
    assert "revassure" in own and ROOT / "revassure" / "settings.py" in trees  # it reads the project
    found = [use for path, tree in trees.items() for use in uses_of_private_names(path, tree, ours, own)]
    assert found == []
