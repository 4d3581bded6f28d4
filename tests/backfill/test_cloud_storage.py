"""Backfill uploads in the shared bucket (Cloud Storage, here its emulator): an
export or finance's reversal CSV uploaded on the web machine is replayed by a
worker on another, and a plan whose file left the bucket is refused, nothing
written."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from google.cloud import storage as cloud_storage

from backfill import plan_approval
from backfill.models import DataMigration
from tests.helpers import EXPORT, firestore_client, put_wallets

pytestmark = pytest.mark.django_db


def points_of(gateway, uid):
    return firestore_client(gateway.project).collection("wallets").document(uid).get().to_dict()["points"]


def names(bucket):
    return sorted(blob.name for blob in cloud_storage.Client().list_blobs(bucket))


@pytest.fixture
def machines(settings, tmp_path):
    """Each machine's own disk (MEDIA_ROOT): the web machine's while uploading."""
    disks = {"web": tmp_path / "web-disk", "worker": tmp_path / "worker-disk"}
    settings.MEDIA_ROOT = disks["web"]
    return disks


def upload(client, view, name, body, *, dry_run, capture):
    data = {"export": SimpleUploadedFile(name, body), **({"dry_run": "on"} if dry_run else {})}
    with capture() as queued:
        response = client.post(reverse(view), data)
    assert response.status_code == 302, response.content.decode()
    return queued


@pytest.mark.parametrize(
    "view, name, body, expected, u1",
    [
        ("admin:backfill_upload", "export.jsonl", ("\n".join(EXPORT) + "\n").encode(), 8, 70),
        (
            "admin:backfill_upload_reversals",
            "r.csv",
            b"payment_id,refund_id,chargeback_id,user_id,points,created\r\n"
            b"pay_1,re_1,,u1,30,2026-11-21T10:00:00Z\r\n",
            1,
            70,
        ),
    ],
    ids=["export", "reversal-csv"],
)
@pytest.mark.usefixtures("one_person_suffices")
def test_an_upload_on_one_machine_is_replayed_by_a_worker_on_another(
    client,
    ops,
    gateway,
    shared_bucket,
    machines,
    settings,
    view,
    name,
    body,
    expected,
    u1,
    django_capture_on_commit_callbacks,
):
    if view == "admin:backfill_upload":
        put_wallets(gateway, {"u1": (0, []), "u2": (10, [10])})
    else:
        gateway.write_wallets([("u1", 100, {"purchase-pay_1": {"type": "purchase", "amount": 100}})])
    client.force_login(ops)
    queued = upload(client, view, name, body, dry_run=False, capture=django_capture_on_commit_callbacks)

    migration = DataMigration.objects.get()
    kept = migration.parameters["path"]
    assert names(shared_bucket) == [kept] and kept.startswith(f"backfill/migration-{migration.pk}-")
    assert cloud_storage.Client().bucket(shared_bucket).blob(kept).download_as_bytes() == body
    assert (migration.parameters["name"], migration.parameters["expected"]) == (name, expected)
    assert not machines["web"].exists()

    settings.MEDIA_ROOT = machines["worker"]
    for task in queued:
        task()

    migration.refresh_from_db()
    assert (migration.status, migration.processed) == ("completed", expected)
    assert points_of(gateway, "u1") == u1
    assert not machines["worker"].exists()


def test_a_plan_whose_file_left_the_bucket_is_refused_nothing_written(
    client, ops, approver, gateway, shared_bucket, machines, django_capture_on_commit_callbacks
):
    put_wallets(gateway, {"u1": (0, []), "u2": (10, [10])})
    client.force_login(ops)
    body = ("\n".join(EXPORT) + "\n").encode()
    for task in upload(
        client,
        "admin:backfill_upload",
        "e.jsonl",
        body,
        dry_run=True,
        capture=django_capture_on_commit_callbacks,
    ):
        task()
    plan = DataMigration.objects.get()
    assert plan.status == "completed" and plan.plan_items.count() == 8
    plan_approval.approve_plan(plan.pk, actor=approver, reason="as planned")  # four eyes
    with django_capture_on_commit_callbacks() as queued:
        client.post(reverse("admin:backfill_run_bound", args=[plan.pk]))
    cloud_storage.Client().bucket(shared_bucket).blob(plan.parameters["path"]).delete()
    for task in queued:
        task()

    real = DataMigration.objects.get(dry_run=False)
    assert (real.status, real.error) == (
        "failed",
        "refused, nothing written: its uploaded file is no longer kept",
    )
    assert points_of(gateway, "u1") == 0
    page = client.get(reverse("admin:backfill_datamigration_change", args=[plan.pk])).content.decode()
    assert "its uploaded file is no longer kept: upload it again" in page
