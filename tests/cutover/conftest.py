"""A cutover's world: wallets in the emulator, snapshots in a temporary directory,
alert rules quiet unless a test opens an alert itself."""

import pytest

from observability.models import AlertRule
from tests.helpers import put_wallets


@pytest.fixture(autouse=True)
def snapshot_dir(settings, tmp_path):
    settings.SNAPSHOT_DIR = tmp_path / "snapshots"


@pytest.fixture
def clean_wallets(gateway):
    put_wallets(gateway, {"u1": (10, [10]), "u2": (5, [2, 3])})
    # The freeze and the run evaluate alert rules; a test that wants an open
    # alert makes one, so monitoring is decided by the test, not by the rules.
    AlertRule.objects.update(enabled=False)
    return gateway


@pytest.fixture
def drifted_wallets(gateway):
    put_wallets(gateway, {"u1": (12, [10]), "u2": (5, [2, 3])})
    AlertRule.objects.update(enabled=False)
    return gateway
