import subprocess
import sys

import pytest
from django.core.checks import run_checks

from devtools.emulator import ROOT


def error_ids():
    return {error.id for error in run_checks()}


@pytest.mark.parametrize("value", ["2am", "25:00", "02:60", "2:5", ""])
def test_a_bad_daily_time_fails_the_checks_naming_the_variable(settings, value):
    settings.RECONCILE_DAILY_AT = value
    errors = [e for e in run_checks() if e.id == "revassure.E001"]
    assert errors and "RECONCILE_DAILY_AT" in errors[0].msg


def test_the_default_configuration_passes(settings):
    assert not {i for i in error_ids() if i.startswith("revassure.")}


def test_bad_numbers_and_urls_fail_the_checks(settings):
    settings.RECONCILE_CONCURRENCY = 0
    settings.RECONCILE_CHUNK_SIZE = 0
    settings.REDIS_URL = "localhost:6379"
    assert {"revassure.E002", "revassure.E003", "revassure.E005"} <= error_ids()


def test_the_server_refuses_to_start_without_a_secret_key_when_debug_is_off():
    env = {"PATH": "/usr/bin:/bin", "DEBUG": "false", "HOME": "/tmp"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "SECRET_KEY (or SECRET_KEY_FILE) must be set when DEBUG is off" in result.stderr
