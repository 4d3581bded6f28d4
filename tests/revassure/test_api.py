"""The core's machine endpoints: health, readiness, and the OpenAPI document,
which every machine endpoint of the project (jobs, webhook, probes) keeps to."""

import re

import pytest
import schemathesis
from django import conf
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from revassure.firestore.events import event_body


@pytest.mark.django_db
def test_health_and_readiness(client, gateway):
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "database": "ok", "firestore": "ok"}


@pytest.mark.django_db
def test_readiness_fails_when_firestore_is_unreachable(client, firestore_project, monkeypatch):
    from revassure import firestore

    broken = firestore.FirestoreGateway(firestore_project)
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")
    monkeypatch.setattr("revassure.api.get_gateway", lambda: broken)

    ready = client.get("/readyz")

    assert ready.status_code == 503
    assert ready.json()["firestore"].startswith("unreachable")


# The Eventarc endpoint's body: a DocumentEventData message, built with the real
# protobuf types, naming a wallet, a ledger entry or another document (a deletion
# names it as the old value).
_DOCUMENTS = st.from_regex(r"\A(wallets/[a-z0-9]{1,6}(/ledger/[a-z0-9]{1,6})?|config/[a-z]{1,6})\Z")
_NAMES = _DOCUMENTS.map(lambda path: f"projects/p/databases/(default)/documents/{path}")
schemathesis.openapi.media_type(
    "application/protobuf",
    st.one_of(
        st.builds(event_body, _NAMES),
        st.builds(lambda old: event_body(None, old_name=old), _NAMES),
    ),
)


def _load_schema():
    from revassure.wsgi import application

    # Fetched from the running app, as a client would (the view touches no database).
    return schemathesis.openapi.from_wsgi("/api/openapi.json", application)


schema = _load_schema()


@pytest.fixture
def wsgi_keeps_the_test_connection():
    """Calls through the bare WSGI app close the database connection after each
    request, which ends the test's transaction; Django's own test client
    disconnects the same handlers."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@pytest.mark.django_db
def test_the_running_endpoints_keep_to_their_openapi_document(
    case, job_settings, token, gateway, wsgi_keeps_the_test_connection
):
    # With a valid token (the job endpoints configured to accept it) the calls
    # get past authentication; schemathesis checks every status code, header
    # and body against the document.
    headers = {"Authorization": f"Bearer {token()}"}
    if case.path == "/api/events/firestore" and "ce-source" in (case.headers or {}):
        # As the token above, what this deployment accepts: its own database.
        project = conf.settings.GOOGLE_CLOUD_PROJECT
        headers["ce-source"] = f"//firestore.googleapis.com/projects/{project}/databases/(default)"
    case.call_and_validate(headers=headers)


def machine_urls(patterns=None, prefix=""):
    """Every URL the project serves to machines, as the OpenAPI document writes
    paths: under api/ (but the document itself), and the probes."""
    from django.urls import URLPattern, get_resolver

    found = set()
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLPattern):
            if route.startswith("api/") and route != "api/openapi.json" or route in ("healthz", "readyz"):
                found.add("/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route))
        elif route.startswith("api/"):
            found |= machine_urls(pattern.url_patterns, route)
    return found


@pytest.mark.django_db
def test_the_openapi_document_is_served_and_names_every_machine_url(client):
    document = client.get("/api/openapi.json").json()
    assert set(document["paths"]) == machine_urls()
    assert {
        "/api/jobs/reconcile",
        "/api/jobs/backfill",
        "/api/jobs/settlement",
        "/api/jobs/{job_id}",
        "/api/events/firestore",
        "/api/webhooks/paynow",
        "/healthz",
        "/readyz",
    } <= machine_urls()
