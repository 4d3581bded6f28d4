"""POST /api/jobs/settlement: the same OIDC rules as the other job endpoints, the
local-file form (tests) and the Cloud Storage form (checked, fetched by the worker)."""

import pytest
from django.urls import reverse

from jobs.models import Job
from settlement.models import SettlementRun


@pytest.fixture(autouse=True)
def _jobs_configured(job_settings, settings, tmp_path):
    settings.SETTLEMENT_LOCAL_DIR = tmp_path


def post(client, body, bearer=None, **headers):
    if bearer is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {bearer}"
    return client.post(reverse("job-settlement"), data=body, content_type="application/json", **headers)


def test_a_scheduler_token_matches_a_local_statement_and_the_job_says_what_it_found(
    client, token, world, write_statement, every_outcome, django_capture_on_commit_callbacks
):
    path = write_statement(every_outcome)
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, {"path": str(path)}, token(), HTTP_IDEMPOTENCY_KEY="settle-2026-11-25")
    assert response.status_code == 202
    job = Job.objects.get()
    assert job.kind == "settlement" and job.settlement_run.trigger == "api"
    status = client.get(reverse("job-status", args=[job.pk]), HTTP_AUTHORIZATION=f"Bearer {token()}").json()
    assert status["status"] == "completed" and status["rows"] == 14 and status["missing_in_ledger"] == 2
    assert status["settlement_run_id"] == job.settlement_run_id and len(status["checksum"]) == 64
    # A retry with the same key gets the same job, not a second run.
    again = post(client, {"path": str(path)}, token(), HTTP_IDEMPOTENCY_KEY="settle-2026-11-25")
    assert again.json()["job_id"] == job.pk and SettlementRun.objects.count() == 1


def test_no_token_is_401_and_a_caller_not_allowed_is_403(client, token, world, write_statement):
    path = str(write_statement([]))
    assert post(client, {"path": path}).status_code == 401
    assert post(client, {"path": path}, token(email="intruder@example.com")).status_code == 403
    assert not SettlementRun.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"path": "gs://bucket-only"},
        {"path": "statement.csv"},
        {"path": 7},
        {"path": "gs://b/o", "extra": 1},
    ],
)
def test_bad_bodies_are_400_and_start_nothing(client, token, db, body):
    assert post(client, body, token()).status_code == 400
    assert not SettlementRun.objects.exists()


def test_a_local_file_outside_the_settlement_directory_is_not_found(client, token, db):
    assert post(client, {"path": "/etc/passwd"}, token()).status_code == 404
    assert not SettlementRun.objects.exists()


def test_a_cloud_storage_path_is_queued_for_the_worker_to_fetch(client, token, db):
    response = post(client, {"path": "gs://paynow-statements/2026-11-25.csv"}, token())
    assert response.status_code == 202
    run = SettlementRun.objects.get()
    assert (
        run.source == "gs://paynow-statements/2026-11-25.csv" and run.path == "" and run.status == "pending"
    )
