import json

import pytest
from django.urls import reverse

from backfill import run_requests, runs
from backfill.models import DataMigration, EventStatus, MigrationStatus, ProviderEventDelivery
from jobs.models import Job
from revassure.flags import set_flag
from tests.helpers import firestore_client, put_wallets
from tests.helpers import stored_event as stored


@pytest.fixture
def backlog(gateway):
    """Deliveries stored but never applied (the webhook workers were down)."""
    put_wallets(gateway, {"u1": (0, [])})
    return [
        stored("evt_1"),
        stored("evt_r", "payment.refunded", points=40, refund_id="re_1"),
        stored("evt_g", user="ghost", payment="pay_g"),
    ]


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_the_backfill_job_applies_what_was_stored_but_not_applied(
    client, gateway, backlog, token, job_settings, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("job-backfill"),
            data="{}",
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token()}",
            HTTP_IDEMPOTENCY_KEY="backfill-1",
        )

    assert response.status_code == 202
    assert (response.json()["kind"], response.json()["status"]) == ("backfill", "pending")
    body = client.get(
        reverse("job-status", args=[response.json()["job_id"]]), HTTP_AUTHORIZATION=f"Bearer {token()}"
    ).json()
    assert (body["status"], body["applied"], body["quarantined"], body["total"]) == ("completed", 2, 1, 3)
    assert (
        firestore_client(gateway.project).collection("wallets").document("u1").get().to_dict()["points"] == 60
    )
    # The unknown user parses, and is quarantined when applied.
    assert ProviderEventDelivery.objects.get(event_id="evt_g").status == EventStatus.QUARANTINED
    assert (
        firestore_client(gateway.project)
        .collection("dataMigrations")
        .document(str(body["migration_id"]))
        .get()
        .exists
    )
    again = client.post(
        reverse("job-backfill"),
        data="{}",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token()}",
        HTTP_IDEMPOTENCY_KEY="backfill-1",
    )
    assert again.json()["job_id"] == body["job_id"] and Job.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_quarantined_events_can_be_rerun_after_a_fix(gateway, backlog, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        run_requests.request_stored_replay()
    assert ProviderEventDelivery.objects.get(event_id="evt_g").status == EventStatus.QUARANTINED

    put_wallets(gateway, {"ghost": (0, [])})  # the fix: the user's wallet now exists
    with django_capture_on_commit_callbacks(execute=True):
        migration = run_requests.request_stored_replay(include_quarantined=True)

    migration.refresh_from_db()
    assert (migration.status, migration.applied, migration.total) == ("completed", 1, 1)
    assert ProviderEventDelivery.objects.get(event_id="evt_g").status == EventStatus.APPLIED


@pytest.mark.django_db
def test_backfill_refuses_while_its_flag_is_off(client, gateway, ops, token, job_settings):
    set_flag("backfill_enabled", False, actor=ops, reason="cutover")
    response = client.post(
        reverse("job-backfill"),
        data="{}",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token()}",
    )
    assert response.status_code == 503 and "backfill_enabled" in response.json()["error"]
    with pytest.raises(Exception, match="backfill_enabled"):
        run_requests.start_replay(path="x.jsonl", dry_run=False)
    assert not DataMigration.objects.exists() and not Job.objects.exists()


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_ops_pause_resume_and_cancel(gateway, backlog, ops, reviewer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():  # queued, not yet taken by a worker
        migration = run_requests.request_stored_replay()
    with pytest.raises(PermissionError):
        runs.set_status(migration.pk, "pause", actor=reviewer)

    assert runs.set_status(migration.pk, "pause", actor=ops).status == MigrationStatus.PAUSED
    with django_capture_on_commit_callbacks(execute=True):
        runs.set_status(migration.pk, "resume", actor=ops)
    migration.refresh_from_db()
    assert migration.status == MigrationStatus.COMPLETED
    with pytest.raises(ValueError, match="cannot cancel now"):
        runs.set_status(migration.pk, "cancel", actor=ops)


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_a_migration_whose_worker_went_silent_is_handed_to_a_worker_again(
    gateway, backlog, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.utils import timezone

    from backfill import tasks

    with django_capture_on_commit_callbacks():
        migration = run_requests.request_stored_replay()
    # A worker took it, then died without a trace (Redis does not redeliver).
    DataMigration.objects.filter(pk=migration.pk).update(
        status=MigrationStatus.RUNNING, heartbeat_at=timezone.now() - timedelta(hours=1)
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.sweep_migrations() == 1

    migration.refresh_from_db()
    assert (migration.status, migration.applied) == (MigrationStatus.COMPLETED, 2)


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_a_migration_whose_task_was_lost_before_any_worker_took_it_is_queued_again(
    gateway, backlog, settings, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.utils import timezone

    from backfill import tasks

    with django_capture_on_commit_callbacks() as queued:
        migration = run_requests.request_stored_replay()
    assert len(queued) == 1  # its task went to a machine that died (never run here)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.sweep_migrations() == 0  # requested just now: its task may still come

    requested = timezone.now() - timedelta(seconds=settings.REPLAY_LEASE_SECONDS + 1)
    DataMigration.objects.filter(pk=migration.pk).update(created_at=requested)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.sweep_migrations() == 1

    migration.refresh_from_db()
    assert (migration.status, migration.applied) == (MigrationStatus.COMPLETED, 2)


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_an_uploaded_file_replay_whose_worker_went_silent_resumes_but_a_commands_does_not(
    gateway, tmp_path, settings, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.utils import timezone

    from backfill import tasks

    settings.MEDIA_ROOT = tmp_path
    put_wallets(gateway, {"u1": (0, [])})
    body = {"id": "evt_u", "type": "payment.succeeded", "created": "2026-11-20T10:00:00Z"}
    body["data"] = {"payment_id": "pay_u", "user_id": "u1", "points": 7}
    upload = SimpleUploadedFile("export.jsonl", json.dumps(body).encode())
    with django_capture_on_commit_callbacks():
        uploaded = run_requests.request_file_replay(upload, dry_run=False, actor=None)
    from_command = run_requests.start_replay(path="/elsewhere/export.jsonl", dry_run=False)
    # Both taken by a worker or a shell that then died without a trace.
    DataMigration.objects.update(
        status=MigrationStatus.RUNNING, heartbeat_at=timezone.now() - timedelta(hours=1)
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.sweep_migrations() == 1

    uploaded.refresh_from_db()
    from_command.refresh_from_db()
    assert (uploaded.status, uploaded.applied) == (MigrationStatus.COMPLETED, 1)
    assert from_command.status == MigrationStatus.RUNNING
    assert (
        firestore_client(gateway.project).collection("wallets").document("u1").get().to_dict()["points"] == 7
    )
