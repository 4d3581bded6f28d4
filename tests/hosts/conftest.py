"""The hosts the tests in this package run the product on: tests/hosts/site.py
builds them once for the package (skipped, saying why, where they cannot be made)."""

import pytest

from devtools.emulator import EmulatorUnavailable
from tests.hosts.site import HostsUnavailable, running_site


@pytest.fixture(scope="package")
def hosts(tmp_path_factory):
    try:
        with running_site(tmp_path_factory.mktemp("hosts")) as site:
            yield site
    except HostsUnavailable as exc:
        pytest.skip(f"tests/hosts skipped: {exc}")
    except EmulatorUnavailable as exc:
        pytest.fail(str(exc))
