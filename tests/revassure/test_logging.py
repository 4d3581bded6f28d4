import copy
import io
import json
import logging
import logging.config

import pytest
from django.conf import settings
from django.urls import reverse

from revassure.logs import bound_correlation_id
from tests.helpers import put_wallets


@pytest.fixture
def json_log():
    """The production LOGGING applied with logging.config.dictConfig, as Django
    applies it at start-up, its handler's output read back line by line.

    Only the level differs (INFO rather than the tests' LOG_LEVEL of WARNING),
    so the run's info lines are written; formatter, field names, filters and
    handlers are the configuration's own.
    """
    config = copy.deepcopy(settings.LOGGING)
    config["root"]["level"] = "INFO"
    logging.config.dictConfig(config)
    [handler] = [h for h in logging.getLogger().handlers if h.name == "stderr"]
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    handler.setStream(previous)
    logging.config.dictConfig(settings.LOGGING)


@pytest.mark.django_db
def test_a_request_id_follows_the_run_into_its_tasks(
    client, ops, gateway, json_log, django_capture_on_commit_callbacks
):
    put_wallets(gateway, {"u1": (2, [1])})
    client.force_login(ops)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:reconciliation_run_now"), HTTP_X_REQUEST_ID="req-0123456789")

    assert response["X-Request-ID"] == "req-0123456789"
    lines = [line for line in json_log() if line["logger"].startswith("reconciliation")]
    assert {line["message"] for line in lines} >= {
        "reconciliation run requested",
        "reconciliation run started",
        "reconciliation run completed",
    }
    assert {line["correlation_id"] for line in lines} == {"req-0123456789"}


def test_each_log_line_is_one_json_object_with_the_production_field_names(json_log):
    logging.getLogger("revassure.test").warning("disk %s full", "nearly", extra={"run_id": 7})

    [line] = json_log()
    assert set(line) == {"time", "level", "logger", "message", "correlation_id", "run_id"}
    assert (line["level"], line["logger"], line["message"]) == (
        "WARNING",
        "revassure.test",
        "disk nearly full",
    )


def test_django_q_logs_through_the_same_json_handler(json_log):
    logging.getLogger("django-q").error("worker died")

    assert [(line["logger"], line["message"]) for line in json_log()] == [("django-q", "worker died")]


def test_an_unbound_id_is_null(json_log):
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
