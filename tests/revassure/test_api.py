"""The core's machine endpoints: health, readiness, and the OpenAPI document,
which every machine endpoint of the project (jobs, webhook, probes) keeps to."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings


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
    case.call_and_validate(headers={"Authorization": f"Bearer {token()}"})


@pytest.mark.django_db
def test_the_openapi_document_is_served(client):
    document = client.get("/api/openapi.json").json()
    assert set(document["paths"]) == {
        "/api/jobs/reconcile",
        "/api/jobs/backfill",
        "/api/jobs/settlement",
        "/api/jobs/{job_id}",
        "/api/webhooks/paynow",
        "/healthz",
        "/readyz",
    }
