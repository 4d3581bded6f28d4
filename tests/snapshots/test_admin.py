"""Snapshots in the admin: ops start them (a worker takes them, with progress); every role sees them."""

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from snapshots import services
from snapshots.models import Restore, Snapshot, SnapshotStatus, Verification
from tests.helpers import csp_refusals, put_wallets

pytestmark = pytest.mark.django_db
CHANGELIST = "admin:snapshots_snapshot_changelist"


@pytest.fixture(autouse=True)
def snapshot_dir(settings, tmp_path):
    settings.SNAPSHOT_DIR = tmp_path / "snapshots"


def test_every_snapshot_admin_page_renders(client, gateway, tmp_path):
    put_wallets(gateway, {"u1": (1, [1]), "u2": (3, [1])})
    snapshot = services.take(tmp_path / "snap", actor=None, gateway=gateway)
    restore = Restore.objects.create(
        path=snapshot.path, project="elsewhere", refused=True, error="not allowed"
    )
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    for url in [
        reverse(CHANGELIST),
        reverse(CHANGELIST) + "?verification=intact",
        reverse("admin:snapshots_snapshot_change", args=[snapshot.pk]),
        reverse("admin:snapshots_start"),
        reverse("admin:snapshots_restore_changelist"),
        reverse("admin:snapshots_restore_change", args=[restore.pk]),
    ]:
        response = client.get(url)
        assert response.status_code == 200, url
        assert csp_refusals(response.content.decode()) == [], url
    page = client.get(reverse("admin:snapshots_snapshot_change", args=[snapshot.pk])).content.decode()
    assert "wallets-000001.jsonl.gz" in page and snapshot.manifest_sha256[:16] in page
    assert "u2" in page and "points 3 but the ledger sums to 1" in page


def test_ops_take_a_snapshot_from_the_admin_in_a_worker(
    client, gateway, ops, tmp_path, django_capture_on_commit_callbacks
):
    put_wallets(gateway, {"u1": (1, [1])})
    client.force_login(ops)
    assert b'id="take-snapshot"' in client.get(reverse(CHANGELIST)).content

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:snapshots_start"), {"start": "Take a snapshot"})

    snapshot = Snapshot.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:snapshots_snapshot_change", args=[snapshot.pk])
    assert (snapshot.status, snapshot.verification, snapshot.wallets) == (
        SnapshotStatus.COMPLETED,
        Verification.INTACT,
        1,
    )
    assert (snapshot.started_by, snapshot.wallets_done, snapshot.wallets_expected) == (ops, 1, 1)
    assert snapshot.path.startswith(f"{tmp_path / 'snapshots'}/{gateway.project}-")


@pytest.mark.parametrize("role", ["reviewer", "approver"])
def test_reviewers_and_approvers_see_snapshots_but_cannot_take_them(client, gateway, role, request):
    person = request.getfixturevalue(role)
    client.force_login(person)

    listing = client.get(reverse(CHANGELIST))
    assert listing.status_code == 200 and b'id="take-snapshot"' not in listing.content
    assert client.get(reverse("admin:snapshots_start")).status_code == 403
    assert client.post(reverse("admin:snapshots_start"), {"start": "1"}).status_code == 403
    assert not Snapshot.objects.exists()


def test_outsiders_see_nothing(client, outsider):
    client.force_login(outsider)
    assert client.get(reverse(CHANGELIST)).status_code == 403


def test_a_running_snapshot_page_reloads_itself_and_shows_progress(client, gateway, ops):
    snapshot = Snapshot.objects.create(
        project=gateway.project,
        path="/tmp/x",
        status=SnapshotStatus.RUNNING,
        wallets_expected=10,
        wallets_done=4,
    )
    client.force_login(ops)
    page = client.get(reverse("admin:snapshots_snapshot_change", args=[snapshot.pk])).content.decode()
    assert 'http-equiv="refresh"' in page and "4 of 10 wallets" in page


def test_ops_verify_again_and_a_damaged_snapshot_shows_corrupt(client, gateway, ops, tmp_path):
    put_wallets(gateway, {"u1": (1, [1])})
    snapshot = services.take(tmp_path / "snap", actor=ops, gateway=gateway)
    (tmp_path / "snap" / "config.jsonl.gz").unlink()
    client.force_login(ops)

    response = client.post(
        reverse(CHANGELIST), {"action": "verify_again", "_selected_action": [snapshot.pk]}, follow=True
    )

    snapshot.refresh_from_db()
    assert snapshot.verification == Verification.CORRUPT
    assert snapshot.verification_errors == ["config.jsonl.gz: absent (the manifest lists it with 0 lines)"]
    assert f"not intact: #{snapshot.pk}" in response.content.decode()


def test_reviewers_cannot_verify_again(client, gateway, reviewer, tmp_path):
    put_wallets(gateway, {"u1": (1, [1])})
    snapshot = services.take(tmp_path / "snap", actor=None, gateway=gateway)
    verified_at = snapshot.verified_at
    client.force_login(reviewer)
    client.post(reverse(CHANGELIST), {"action": "verify_again", "_selected_action": [snapshot.pk]})
    snapshot.refresh_from_db()
    assert snapshot.verified_at == verified_at


def test_ops_take_a_failed_snapshot_again(client, gateway, ops, tmp_path, django_capture_on_commit_callbacks):
    put_wallets(gateway, {"u1": (1, [1])})
    snapshot = Snapshot.objects.create(
        project=gateway.project,
        path=str(tmp_path / "snap"),
        status=SnapshotStatus.FAILED,
        error="worker lost",
    )
    client.force_login(ops)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse(CHANGELIST), {"action": "take_again", "_selected_action": [snapshot.pk]})
    snapshot.refresh_from_db()
    assert (snapshot.status, snapshot.verification, snapshot.error) == (
        SnapshotStatus.COMPLETED,
        Verification.INTACT,
        "",
    )


def test_verify_again_records_a_manifest_that_cannot_be_read_as_corrupt(client, gateway, ops, tmp_path):
    """Issue 27 item 11: a manifest without its files list was a 500 that recorded nothing."""
    put_wallets(gateway, {"u1": (1, [1])})
    snapshot = services.take(tmp_path / "snap", actor=ops, gateway=gateway)
    manifest = tmp_path / "snap" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"files"', '"filez"'))
    client.force_login(ops)

    response = client.post(
        reverse(CHANGELIST), {"action": "verify_again", "_selected_action": [snapshot.pk]}, follow=True
    )

    assert response.status_code == 200
    assert f"not intact: #{snapshot.pk}" in response.content.decode()
    snapshot.refresh_from_db()
    assert snapshot.verification == Verification.CORRUPT
    assert 'manifest.json: no "files" (the list of data files)' in snapshot.verification_errors
