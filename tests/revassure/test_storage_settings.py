"""REVASSURE_STORAGE chooses where files the workers read are kept: Cloud
Storage (gcs) in production, the local disk by default; a wrong value stops
the start-up naming the variable."""

import os
import secrets
import subprocess
import sys

from devtools.emulator import ROOT

SHOW = (
    "from django.conf import settings; from django.core.files.storage import storages; "
    "s = storages['default']; "
    "print(type(s).__module__ + '.' + type(s).__name__, getattr(s, 'bucket_name', None), "
    "getattr(s, 'location', None), settings.SNAPSHOT_DIR)"
)


def shell(**environment):
    env = {
        "PATH": os.environ["PATH"],
        "HOME": "/tmp",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        **environment,
    }
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c", SHOW],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_gcs_keeps_files_in_the_bucket_and_snapshots_beside_them():
    shown = shell(REVASSURE_STORAGE="gcs", GS_BUCKET_NAME="revassure-prod-files", GS_LOCATION="/prod/")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == [
        "storages.backends.gcloud.GoogleCloudStorage",
        "revassure-prod-files",
        "prod",
        "gs://revassure-prod-files/prod/snapshots",
    ]


def test_by_default_files_stay_on_the_local_disk(tmp_path):
    shown = shell(MEDIA_ROOT=str(tmp_path))
    assert shown.returncode == 0, shown.stderr
    backend, bucket, location, snapshots = shown.stdout.split()
    assert (backend, bucket, location) == (
        "django.core.files.storage.filesystem.FileSystemStorage",
        "None",
        str(tmp_path),
    )
    assert snapshots == str(ROOT / "snapshots-data")


def test_gcs_without_a_bucket_or_an_unknown_storage_stops_the_start_up():
    missing = shell(REVASSURE_STORAGE="gcs")
    assert missing.returncode != 0 and "REVASSURE_STORAGE=gcs needs GS_BUCKET_NAME" in missing.stderr
    unknown = shell(REVASSURE_STORAGE="s3")
    assert unknown.returncode != 0 and "REVASSURE_STORAGE must be local or gcs, not 's3'" in unknown.stderr
