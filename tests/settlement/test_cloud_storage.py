"""Statements in Cloud Storage, against the Cloud Storage emulator: an admin
upload kept in the shared bucket and matched by a worker on another machine,
and the job API's gs://bucket/object read from the bucket by the worker."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from google.cloud import storage as cloud_storage

from jobs.models import Job
from settlement.models import SettlementRun


def post_job(client, body, bearer):
    return client.post(
        reverse("job-settlement"),
        data=body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {bearer}",
    )


def names(bucket):
    return sorted(blob.name for blob in cloud_storage.Client().list_blobs(bucket))


def test_a_statement_uploaded_on_one_machine_is_matched_by_a_worker_on_another(
    client,
    ops,
    world,
    write_statement,
    every_outcome,
    shared_bucket,
    settings,
    tmp_path,
    django_capture_on_commit_callbacks,
):
    web, worker = tmp_path / "web-disk", tmp_path / "worker-disk"
    settings.MEDIA_ROOT = web
    body = write_statement(every_outcome).read_bytes()
    client.force_login(ops)
    with django_capture_on_commit_callbacks() as queued:
        response = client.post(
            reverse("admin:settlement_upload"), {"statement": SimpleUploadedFile("paynow.csv", body)}
        )
    assert response.status_code == 302
    run = SettlementRun.objects.get()
    # Kept in the bucket, not on the web machine's disk.
    assert names(shared_bucket) == [run.path] and run.path.startswith("settlement/upload-")
    assert cloud_storage.Client().bucket(shared_bucket).blob(run.path).download_as_bytes() == body
    assert not web.exists()

    settings.MEDIA_ROOT = worker  # the worker's machine: nothing of the web machine's disk
    for task in queued:
        task()

    run.refresh_from_db()
    assert (run.status, run.rows, run.expected_rows, run.missing_in_ledger) == ("completed", 14, 14, 2)
    assert run.source == "paynow.csv" and len(run.checksum) == 64
    assert not worker.exists()  # read from the bucket, nothing left behind


def test_an_upload_refused_for_its_header_keeps_nothing_in_the_bucket(client, ops, world, shared_bucket):
    client.force_login(ops)
    bad = SimpleUploadedFile("export.jsonl", b'{"id": "evt_1"}\n')
    response = client.post(reverse("admin:settlement_upload"), {"statement": bad})
    assert "lacks the columns" in response.content.decode()
    assert names(shared_bucket) == [] and not SettlementRun.objects.exists()


def test_the_job_api_given_a_gs_path_matches_the_object_the_worker_reads_from_cloud_storage(
    client,
    token,
    job_settings,
    world,
    write_statement,
    every_outcome,
    bucket,
    django_capture_on_commit_callbacks,
):
    blob = cloud_storage.Client().bucket(bucket).blob("paynow/2026-11-25.csv")
    blob.upload_from_filename(str(write_statement(every_outcome)))
    uri = f"gs://{bucket}/paynow/2026-11-25.csv"

    with django_capture_on_commit_callbacks(execute=True):
        response = post_job(client, {"path": uri}, token())

    assert response.status_code == 202
    job = Job.objects.get()
    status = client.get(reverse("job-status", args=[job.pk]), HTTP_AUTHORIZATION=f"Bearer {token()}").json()
    assert status["status"] == "completed" and status["rows"] == 14 and status["missing_in_ledger"] == 2
    run = job.settlement_run
    assert (run.source, run.path, run.trigger) == (uri, "", "api")
    assert run.file_bytes == blob.size


@pytest.mark.parametrize(
    "where", ["gs://{bucket}/paynow/absent.csv", "gs://no-such-bucket/paynow.csv"], ids=["object", "bucket"]
)
def test_a_gs_path_cloud_storage_does_not_have_fails_the_run_saying_so(
    client, token, job_settings, world, bucket, where, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_job(client, {"path": where.format(bucket=bucket)}, token())
    assert response.status_code == 202  # the worker finds out: the scheduler is not made to wait
    run = SettlementRun.objects.get()
    uri = where.format(bucket=bucket)
    assert (run.status, run.error) == ("failed", f"FileNotFoundError: {uri}: no such object in Cloud Storage")
    status = client.get(
        reverse("job-status", args=[Job.objects.get().pk]), HTTP_AUTHORIZATION=f"Bearer {token()}"
    )
    assert status.json()["status"] == "failed"


class TricklingCloudStorage(BaseHTTPRequestHandler):
    """Enough of Cloud Storage's JSON API for a read: an object's metadata at once,
    its bytes one a second (under google-cloud-storage's 60 s per-read timeout)."""

    size = 1000
    stop = threading.Event()

    def do_GET(self):
        parts = urlsplit(self.path)
        if "alt=media" in parts.query:
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(self.size))
            self.end_headers()
            for _ in range(self.size):
                if self.stop.wait(1):
                    return
                self.wfile.write(b"x")
                self.wfile.flush()
            return
        bucket, _, name = parts.path.removeprefix("/storage/v1/b/").partition("/o/")
        body = json.dumps(
            {"bucket": bucket, "name": name, "size": str(self.size), "generation": "1"}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_statement_cloud_storage_trickles_fails_the_run_at_the_storage_deadline(
    client, token, job_settings, world, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.STORAGE_DEADLINE_SECONDS = 2
    server = ThreadingHTTPServer(("127.0.0.1", 0), TricklingCloudStorage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{server.server_port}")
    uri = "gs://statements/paynow/2026-11-25.csv"
    try:
        started = time.monotonic()
        with django_capture_on_commit_callbacks(execute=True):
            response = post_job(client, {"path": uri}, token())
        seconds = time.monotonic() - started
    finally:
        TricklingCloudStorage.stop.set()
        server.shutdown()
        server.server_close()

    assert response.status_code == 202
    assert seconds < 2 + 3, f"the worker was held {seconds:.1f} s"
    run = SettlementRun.objects.get()
    assert run.status == "failed"
    assert run.error == ("StorageError: paynow/2026-11-25.csv: not read in full within the deadline of 2 s")
    status = client.get(
        reverse("job-status", args=[Job.objects.get().pk]), HTTP_AUTHORIZATION=f"Bearer {token()}"
    ).json()
    assert status["status"] == "failed" and "deadline of 2 s" in status["error"]
