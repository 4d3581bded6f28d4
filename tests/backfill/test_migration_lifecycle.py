"""The life of a data migration: one state machine, one worker at a time, and a
stop that ops asked for is never overwritten by a worker finishing late."""

import json
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from backfill import completeness, file_replay, run_requests, runs
from backfill.models import DataMigration, InvalidTransition, MigrationKind, MigrationSource, MigrationStatus
from tests.helpers import put_wallets


def line(n, user="u1"):
    body = {"id": f"evt_{n}", "type": "payment.succeeded", "created": "2026-11-20T10:00:00Z"}
    body["data"] = {"payment_id": f"pay_{n}", "user_id": user, "points": 1}
    return json.dumps(body)


@pytest.mark.django_db
def test_a_cancel_during_the_last_batch_is_not_overwritten_by_a_late_completed(gateway, ops):
    put_wallets(gateway, {"u1": (0, [])})
    migration = run_requests.start_replay(path="export.jsonl", dry_run=False)

    def read_then_cancel():
        yield from (line(n) for n in range(50))
        runs.set_status(migration.pk, "cancel", actor=ops)  # while the only batch is in flight

    file_replay.run_replay(migration, read_then_cancel(), gateway=gateway)

    migration.refresh_from_db()
    assert migration.status == MigrationStatus.CANCELLED
    # What landed is still counted: the 50 payments were committed before the cancel took hold.
    assert (migration.applied, migration.processed) == (50, 50)


@pytest.mark.django_db
def test_a_running_migration_is_not_handed_to_a_second_worker_while_the_first_may_be_alive(gateway):
    migration = run_requests.start_replay(path="export.jsonl", dry_run=False)
    first = runs.claim(migration)

    assert first is not None
    assert runs.claim(migration) is None  # heartbeat fresh: the first worker may be alive
    assert runs.claim(migration, handoff="not-its-lease") is None
    assert runs.claim(migration, handoff=first) is not None  # its own continuation takes over


@pytest.mark.django_db
def test_a_running_migration_silent_past_the_task_timeout_can_be_claimed(gateway, settings):
    migration = run_requests.start_replay(path="export.jsonl", dry_run=False)
    first = runs.claim(migration)
    silent = timezone.now() - timedelta(seconds=settings.Q_CLUSTER["timeout"] + 1)
    DataMigration.objects.filter(pk=migration.pk).update(heartbeat_at=silent)

    second = runs.claim(migration)

    assert second is not None and second != first


@pytest.mark.django_db
def test_a_worker_that_lost_its_lease_counts_nothing_more(gateway):
    put_wallets(gateway, {"u1": (0, [])})
    migration = run_requests.start_replay(path="export.jsonl", dry_run=False)
    lease = runs.claim(migration)
    DataMigration.objects.filter(pk=migration.pk).update(heartbeat_at=timezone.now() - timedelta(days=1))
    runs.claim(migration)  # another worker took it over

    with pytest.raises(runs.LeaseLost):
        runs.save_progress(migration, lease, {"applied": 5}, checkpoint=5)
    migration.refresh_from_db()
    assert (migration.applied, migration.checkpoint) == (0, 0)


@pytest.mark.django_db
def test_the_state_machine_holds_whatever_code_saves_the_row(gateway):
    migration = run_requests.start_replay(path="export.jsonl", dry_run=False)
    DataMigration.objects.filter(pk=migration.pk).update(status=MigrationStatus.COMPLETED)
    migration.refresh_from_db()

    migration.status = MigrationStatus.RUNNING
    with pytest.raises(InvalidTransition):
        migration.save()
    assert runs.transition(migration.pk, MigrationStatus.PENDING) is False


@pytest.mark.django_db
def test_kinds_and_sources_are_stated_not_inferred(
    gateway, tmp_path, settings, django_capture_on_commit_callbacks
):
    settings.MEDIA_ROOT = tmp_path
    with django_capture_on_commit_callbacks():
        uploaded = run_requests.request_file_replay(
            SimpleUploadedFile("x.jsonl", b"{}\n"), dry_run=True, actor=None
        )
        stored = run_requests.request_stored_replay()
    from_command = run_requests.start_replay(path="x.jsonl", dry_run=True)

    assert (uploaded.kind, uploaded.source) == (MigrationKind.REPLAY_FILE, MigrationSource.UPLOAD)
    assert (stored.kind, stored.source) == (MigrationKind.REPLAY_STORED, MigrationSource.DATABASE)
    assert (from_command.kind, from_command.source) == (MigrationKind.REPLAY_FILE, MigrationSource.COMMAND)
    assert str(stored) == f"replay of stored deliveries #{stored.pk} (pending)"


@pytest.mark.django_db
def test_every_entry_point_checks_the_permission_in_the_service(gateway, reviewer, tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path
    upload = SimpleUploadedFile("x.jsonl", b"")

    with pytest.raises(PermissionError):
        run_requests.request_file_replay(upload, dry_run=True, actor=reviewer)
    with pytest.raises(PermissionError):
        run_requests.request_stored_replay(actor=reviewer)
    with pytest.raises(PermissionError):
        completeness.replay_gaps(gateway, actor=reviewer)
    with pytest.raises(PermissionError):
        run_requests.start_replay(path="x.jsonl", dry_run=False, actor=reviewer)
    assert DataMigration.objects.count() == 0
