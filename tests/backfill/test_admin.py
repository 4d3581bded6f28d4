import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from backfill import runs
from backfill.models import DataMigration, MigrationStatus
from tests.helpers import EXPORT, put_wallets
from tests.helpers import stored_event as stored


@pytest.mark.django_db
def test_every_backfill_admin_page_renders(client, gateway, django_capture_on_commit_callbacks):
    delivery = stored("evt_1")
    with django_capture_on_commit_callbacks():
        migration = runs.request_stored_replay()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    for url in [
        reverse("admin:backfill_datamigration_changelist"),
        reverse("admin:backfill_datamigration_change", args=[migration.pk]),
        reverse("admin:backfill_providereventdelivery_changelist"),
        reverse("admin:backfill_providereventdelivery_changelist") + "?status__exact=received",
        reverse("admin:backfill_providereventdelivery_change", args=[delivery.pk]),
        reverse("admin:backfill_completeness"),
        reverse("admin:backfill_upload"),
    ]:
        assert client.get(url).status_code == 200, url


@pytest.mark.django_db
def test_ops_pause_a_migration_from_the_admin_and_reviewers_cannot(
    client, gateway, ops, reviewer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():
        migration = runs.request_stored_replay()
    url = reverse("admin:backfill_datamigration_changelist")
    data = {"action": "pause", "_selected_action": [migration.pk]}

    client.force_login(reviewer)
    client.post(url, data)
    migration.refresh_from_db()
    assert migration.status == MigrationStatus.PENDING

    client.force_login(ops)
    response = client.post(url, data, follow=True)
    migration.refresh_from_db()
    assert migration.status == MigrationStatus.PAUSED
    assert f"Migration {migration.pk}: pause done." in response.content.decode()


@pytest.mark.django_db
def test_ops_upload_an_export_and_a_worker_replays_it(
    client, gateway, ops, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.BACKFILL_UPLOAD_DIR = tmp_path
    put_wallets(gateway, {"u1": (0, []), "u2": (10, [10])})
    client.force_login(ops)
    export = SimpleUploadedFile("export.jsonl", ("\n".join(EXPORT) + "\n").encode())

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:backfill_upload"), {"export": export}, follow=True)

    migration = DataMigration.objects.get()
    assert f"Replay {migration.pk} queued" in response.content.decode()
    assert (migration.status, migration.total, migration.applied, migration.dry_run) == (
        "completed",
        8,
        3,
        False,
    )
    assert gateway.client.collection("wallets").document("u1").get().to_dict()["points"] == 70


@pytest.mark.django_db
def test_only_ops_upload_exports(client, reviewer):
    client.force_login(reviewer)
    assert client.get(reverse("admin:backfill_upload")).status_code == 403
