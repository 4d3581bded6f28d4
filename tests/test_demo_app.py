"""The demo's commands write made-up wallets and logins: a production
deployment (DEBUG off, REVASSURE_DEMO unset) does not have them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

# CI's PostgreSQL pass skips it, having run it in the defaults pass: `manage.py help` connects to no database.
pytestmark = pytest.mark.same_on_every_database

ROOT = Path(__file__).resolve().parent.parent
DEMO_COMMANDS = {"seed_demo", "setup_demo", "inject_drift"}


def commands(**env: str) -> set[str]:
    environment = {k: v for k, v in os.environ.items() if k not in {"REVASSURE_DEMO", "DEBUG"}}
    environment.update(SECRET_KEY="test-only-not-secret", **env)
    listed = subprocess.run(
        [sys.executable, "manage.py", "help", "--commands"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(listed.split())


@pytest.mark.parametrize(
    ("env", "installed"),
    [
        ({"DEBUG": "false"}, False),  # production
        ({"DEBUG": "true"}, True),  # make demo
        ({"DEBUG": "false", "REVASSURE_DEMO": "true"}, True),  # the tests
        ({"DEBUG": "true", "REVASSURE_DEMO": "false"}, False),
    ],
)
def test_the_demo_commands_exist_only_where_the_demo_is_installed(env, installed):
    found = commands(**env) & DEMO_COMMANDS
    assert found == (DEMO_COMMANDS if installed else set())
    # The product's own commands are there either way.
    assert {"reconcile", "verify_reports", "reconcile_settlement"} <= commands(**env)
