"""The job endpoints with real ID tokens: signed by a test RSA key whose public
half a loopback HTTP server publishes, as Google publishes its own."""

import base64
import json
import time

import pytest
from django.urls import reverse

from jobs.models import Job
from reconciliation.models import ReconciliationRun
from revassure.flags import set_flag
from tests.helpers import AUDIENCE, SCHEDULER, put_wallets


@pytest.fixture(autouse=True)
def _jobs_configured(job_settings):
    """Every test here talks to configured job endpoints."""


def unsigned(claims: dict) -> str:
    def part(data):
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def post(client, bearer=None, **headers):
    if bearer is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {bearer}"
    return client.post(reverse("job-reconcile"), data="{}", content_type="application/json", **headers)


@pytest.mark.django_db
def test_a_good_token_starts_a_reconciliation_and_its_status_can_be_read(
    client, gateway, token, django_capture_on_commit_callbacks
):
    put_wallets(gateway, {"u1": (3, [2])})

    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, token(), HTTP_IDEMPOTENCY_KEY="daily-2026-11-25")

    assert response.status_code == 202
    job = Job.objects.get()
    assert response.json()["job_id"] == job.pk and job.caller == SCHEDULER
    status = client.get(reverse("job-status", args=[job.pk]), HTTP_AUTHORIZATION=f"Bearer {token()}")
    assert status.status_code == 200
    assert status.json()["status"] == "completed" and status.json()["violations_count"] == 1
    assert ReconciliationRun.objects.get().trigger == "api"


def _claims(**overrides):
    now = int(time.time())
    return {
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "email": SCHEDULER,
        "email_verified": True,
        "iat": now,
        "exp": now + 3600,
        **overrides,
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    "case, expected",
    [
        ("no header", 401),
        ("not bearer", 401),
        ("garbage", 401),
        ("wrong audience", 401),
        ("wrong issuer", 401),
        ("expired", 401),
        ("unsigned (alg none)", 401),
        ("signed by another key", 401),
        ("email not allowed", 403),
        ("email not verified", 403),
    ],
)
def test_refused_calls_get_the_right_answer_and_create_nothing(client, token, case, expected):
    now = int(time.time())
    bearer = {
        "no header": None,
        "garbage": "not-a-jwt",
        "wrong audience": token(aud="https://someone-else.example.com"),
        "wrong issuer": token(iss="https://evil.example.com"),
        "expired": token(iat=now - 7200, exp=now - 3600),
        "unsigned (alg none)": unsigned(_claims()),
        "signed by another key": token(key="other"),
        "email not allowed": token(email="intruder@other-project.iam.gserviceaccount.com"),
        "email not verified": token(email_verified=False),
    }.get(case)
    if case == "not bearer":
        response = client.post(reverse("job-reconcile"), HTTP_AUTHORIZATION=f"Basic {token()}")
    else:
        response = post(client, bearer)

    assert response.status_code == expected, response.content
    assert "error" in response.json()
    assert not Job.objects.exists() and not ReconciliationRun.objects.exists()
    if expected == 401:
        assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
def test_the_status_endpoint_needs_a_token_too(client, token):
    assert client.get(reverse("job-status", args=[1])).status_code == 401
    assert (
        client.get(reverse("job-status", args=[1]), HTTP_AUTHORIZATION=f"Bearer {token()}").status_code == 404
    )


@pytest.mark.django_db
def test_a_disabled_flag_answers_503_and_creates_nothing(client, token, ops):
    set_flag("reconciliation_enabled", False, actor=ops, reason="migration")

    response = post(client, token(), HTTP_IDEMPOTENCY_KEY="k1")

    assert response.status_code == 503
    assert "reconciliation_enabled" in response.json()["error"]
    assert not Job.objects.exists() and not ReconciliationRun.objects.exists()


@pytest.mark.django_db
def test_a_retry_with_the_same_key_or_slot_returns_the_same_job(client, gateway, token):
    first = post(client, token(), HTTP_IDEMPOTENCY_KEY="retry-me")
    again = post(client, token(), HTTP_IDEMPOTENCY_KEY="retry-me")
    slot = {"HTTP_X_CLOUDSCHEDULER_SCHEDULETIME": "2026-11-25T02:00:00Z"}
    scheduled, rescheduled = post(client, token(), **slot), post(client, token(), **slot)

    assert first.json()["job_id"] == again.json()["job_id"]
    assert scheduled.json()["job_id"] == rescheduled.json()["job_id"] != first.json()["job_id"]
    assert Job.objects.count() == 2 and ReconciliationRun.objects.count() == 2


@pytest.mark.django_db
def test_a_bad_body_is_a_400(client, token):
    response = client.post(
        reverse("job-reconcile"),
        data='{"uids": [1, 2]}',
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token()}",
    )
    assert response.status_code == 400
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_no_configured_audience_refuses_every_call(client, token, settings):
    settings.JOBS_OIDC_AUDIENCE = ""
    assert post(client, token()).status_code == 401


@pytest.mark.django_db
def test_a_reconcile_jobs_body_carries_the_documented_part_of_the_runs_summary(
    client, gateway, token, django_capture_on_commit_callbacks
):
    put_wallets(gateway, {"u1": (3, [2]), "u2": (5, [5])})
    with django_capture_on_commit_callbacks(execute=True):
        job_id = post(client, token(), HTTP_IDEMPOTENCY_KEY="summary").json()["job_id"]

    body = client.get(reverse("job-status", args=[job_id]), HTTP_AUTHORIZATION=f"Bearer {token()}").json()

    run, job = ReconciliationRun.objects.get(), Job.objects.get()
    assert body == {
        "job_id": job.pk,
        "kind": "reconcile",
        "caller": SCHEDULER,
        "created_at": job.created_at.isoformat(),
        "status": "completed",
        "run_id": run.pk,
        "wallets_checked": 2,
        "violations_count": 1,
        "total_abs_drift": 1,
        "checksum": run.checksum,
        "error": "",
    }


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_a_backfill_window_is_kept_in_utc_whatever_offset_it_was_written_with(
    client, gateway, token, django_capture_on_commit_callbacks
):
    """Python reads offsets up to a day; PostgreSQL refuses one past 15:59 (the
    API answered 500 there). The window is the same instants, in UTC."""

    def backfill(body):
        return client.post(
            reverse("job-backfill"),
            data=json.dumps(body),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token()}",
        )

    with django_capture_on_commit_callbacks():
        response = backfill({"dry_run": True, "since": "2026-11-20T01:00:00-21:56"})
    assert response.status_code == 202
    migration = Job.objects.get(pk=response.json()["job_id"]).migration
    assert migration.parameters["since"] == "2026-11-20T22:56:00+00:00"

    past_the_calendar = backfill({"dry_run": True, "until": "0001-01-01T00:30:00+01:00"})
    assert past_the_calendar.status_code == 400
    assert "out of range" in past_the_calendar.json()["error"]
