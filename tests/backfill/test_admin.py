import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from backfill import replay
from backfill.models import MigrationStatus
from tests.backfill.test_completeness import stored


@pytest.mark.django_db
def test_every_backfill_admin_page_renders(client, gateway, django_capture_on_commit_callbacks):
    delivery = stored("evt_1")
    with django_capture_on_commit_callbacks():
        migration = replay.request_stored_replay()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    for url in [
        reverse("admin:backfill_datamigration_changelist"),
        reverse("admin:backfill_datamigration_change", args=[migration.pk]),
        reverse("admin:backfill_providereventdelivery_changelist"),
        reverse("admin:backfill_providereventdelivery_changelist") + "?status__exact=received",
        reverse("admin:backfill_providereventdelivery_change", args=[delivery.pk]),
        reverse("admin:backfill_completeness"),
    ]:
        assert client.get(url).status_code == 200, url


@pytest.mark.django_db
def test_ops_pause_a_migration_from_the_admin_and_reviewers_cannot(
    client, gateway, ops, reviewer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():
        migration = replay.request_stored_replay()
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
