"""Closes the Firestore clients tests asked for (tests.helpers.firestore_client)
when each test ends, their channels with them: left open, they would slow the
suite down, as open gateways did. A test module that asks for one says

    pytest_plugins = ["tests.firestore_fixtures"]
"""

from collections.abc import Iterator

import pytest

from tests.helpers import FIRESTORE_CLIENTS


@pytest.fixture(autouse=True)
def close_firestore_clients() -> Iterator[None]:
    yield
    while FIRESTORE_CLIENTS:
        FIRESTORE_CLIENTS.popitem()[1].close()
