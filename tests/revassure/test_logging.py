import io
import json
import logging

import pytest
from django.urls import reverse

from revassure.logs import CorrelationIdFilter, bound_correlation_id
from tests.helpers import put_wallets


@pytest.fixture
def json_log():
    """The production log handler (JSON formatter and correlation filter) into a buffer."""
    from pythonjsonlogger.json import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("%(levelname)s %(name)s %(message)s"))
    handler.addFilter(CorrelationIdFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(old_level)


@pytest.mark.django_db
def test_a_request_id_follows_the_run_into_its_tasks(
    client, ops, gateway, json_log, django_capture_on_commit_callbacks
):
    put_wallets(gateway, {"u1": (2, [1])})
    client.force_login(ops)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:reconciliation_run_now"), HTTP_X_REQUEST_ID="req-0123456789")

    assert response["X-Request-ID"] == "req-0123456789"
    lines = [line for line in json_log() if line["name"].startswith("reconciliation")]
    assert {line["message"] for line in lines} >= {
        "reconciliation run requested",
        "reconciliation run started",
        "reconciliation run completed",
    }
    assert {line["correlation_id"] for line in lines} == {"req-0123456789"}


def test_each_log_line_is_one_json_object_and_an_unbound_id_is_null(json_log):
    log = logging.getLogger("revassure.test")
    log.info("outside")
    with bound_correlation_id("sched-abcdef12"):
        log.info("inside", extra={"run_id": 7})
    log.info("after")

    assert [(line["message"], line["correlation_id"]) for line in json_log()] == [
        ("outside", None),
        ("inside", "sched-abcdef12"),
        ("after", None),
    ]


@pytest.mark.django_db
def test_a_request_without_a_sane_id_gets_a_new_one(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="bad id with spaces")
    assert response.status_code == 200
    assert len(response["X-Request-ID"]) == 32 and " " not in response["X-Request-ID"]
