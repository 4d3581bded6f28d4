"""Shared fixtures: the real Firestore emulator, isolated projects, role users.

The Firestore emulator starts once per test session on a free loopback port:
ours (`@firestore-emulator/server`, installed by `npm ci`) by default, Google's
own with FIRESTORE_EMULATOR=google (`.ci/run` runs the suite on both), unless
FIRESTORE_EMULATOR_HOST already points at one. Each test that asks for a
`gateway` gets a Firestore project of its own, so tests never see each other's
documents.
"""

import json
import os
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth.models import Group, User
from django_q.brokers import get_broker
from django_q.conf import Conf
from gcp_storage_emulator.server import create_server
from google.auth import crypt, jwt
from google.cloud import storage as cloud_storage

from devtools.emulator import EmulatorUnavailable, configured_kind, free_port, running_emulator
from revassure.firestore import close_gateway, get_gateway
from revassure.roles import APPROVER, OPS, REVIEWER
from tests.firestore_proxy import close_gateways_made
from tests.helpers import AUDIENCE, FIRESTORE_CLIENTS, ONE_PERSON_SUFFICES, SCHEDULER


def pytest_report_header(config):
    existing = os.environ.get("FIRESTORE_EMULATOR_HOST")
    return f"firestore emulator: {'given at ' + existing if existing else configured_kind()}"


@pytest.fixture(scope="session")
def firestore_emulator():
    """The emulator's host:port for this test session."""
    existing = os.environ.get("FIRESTORE_EMULATOR_HOST")
    if existing:
        yield existing
        return
    try:
        # A transaction left open by a killed worker holds its locks until it
        # idles out (60 s in Firestore); 5 s here keeps the killed-worker tests short.
        with running_emulator(env={"FIRESTORE_EMULATOR_TRANSACTION_IDLE_MS": "5000"}) as emulator:
            os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
            yield emulator.host
    except EmulatorUnavailable as exc:
        pytest.fail(str(exc))
    finally:
        os.environ.pop("FIRESTORE_EMULATOR_HOST", None)


@pytest.fixture
def firestore_project(firestore_emulator, settings):
    """A fresh, empty Firestore project, made the configured one for this test."""
    project = f"test-{uuid.uuid4().hex[:12]}"
    settings.GOOGLE_CLOUD_PROJECT = project
    settings.FIRESTORE_EMULATOR_HOST = firestore_emulator
    yield project
    # Its gateway's thread and channels end with the test, as the project does:
    # kept, a thousand of them slowed the whole suite down.
    close_gateway(project)


@pytest.fixture
def gateway(firestore_project):
    return get_gateway(firestore_project)


@pytest.fixture(autouse=True)
def close_test_clients():
    """What a test opened to Firestore beside its project's gateway ends with
    the test: the gateways the proxy tests bound to a host of their own, and
    Firestore's own clients (tests.helpers.firestore_client). Left open, their
    threads and channels slowed the whole suite down."""
    yield
    close_gateways_made()
    while FIRESTORE_CLIENTS:
        FIRESTORE_CLIENTS.popitem()[1].close()


@pytest.fixture(autouse=True)
def sync_tasks(monkeypatch):
    """Tasks run in process and re-raise: the same functions a worker would call.

    django-q2 reads its Conf at import time, so override_settings cannot do this.
    """
    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture(autouse=True)
def empty_redis_queues(settings):
    """With the Redis broker (REDIS_URL), each test starts with the clusters'
    queues empty, as it starts with an empty database (where the ORM broker
    keeps its queue). Redis outlives the test: a task an earlier test queued
    and no worker took would otherwise stay, and the sweeps (which queue a lost
    task again only when the broker holds nothing) and the queue depth metric
    would read another test's work."""
    if not settings.REDIS_URL:
        return
    for name in (settings.Q_CLUSTER_NAME, settings.NOTIFY_CLUSTER_NAME):
        get_broker(name).purge_queue()


@pytest.fixture(scope="session")
def storage_emulator():
    """A Cloud Storage emulator (gcp-storage-emulator, in memory) on a free
    loopback port for the session: google-cloud-storage, under django-storages
    and the gs:// paths, talks to it through STORAGE_EMULATOR_HOST (set here, so
    processes the tests start inherit it)."""
    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
    try:
        yield os.environ["STORAGE_EMULATOR_HOST"]
    finally:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
        server.stop()


@pytest.fixture
def bucket(storage_emulator):
    """A new, empty bucket in the Cloud Storage emulator, for this test."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    cloud_storage.Client().create_bucket(name)
    return name


@pytest.fixture
def shared_bucket(bucket, settings):
    """The shared storage is Cloud Storage (the emulator's bucket), as in
    production with REVASSURE_STORAGE=gcs: the bucket's name."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.gcloud.GoogleCloudStorage",
            "OPTIONS": {"bucket_name": bucket},
        },
    }
    return bucket


@pytest.fixture(autouse=True)
def test_settings(settings, tmp_path_factory):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Kept files (uploads) on the local disk, never in the checkout.
    settings.MEDIA_ROOT = tmp_path_factory.getbasetemp() / "media"
    # Pages render without a collectstatic manifest (the Docker build makes one).
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def one_person_suffices(settings):
    """Real backfill runs started without a plan, as tests of other things start
    them: their events name fewer points than BACKFILL_PLAN_APPROVAL_ABOVE says
    need a second person. Four eyes is tested where it is the subject
    (tests/backfill/test_plan_approval.py, test_four_eyes.py)."""
    settings.BACKFILL_PLAN_APPROVAL_ABOVE = ONE_PERSON_SUFFICES


def _user(username: str, role: str | None, **extra) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", "password", is_staff=True, **extra)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def reviewer(db):
    return _user("alice", REVIEWER)


@pytest.fixture
def approver(db):
    return _user("bob", APPROVER)


@pytest.fixture
def ops(db):
    return _user("olga", OPS)


@pytest.fixture
def outsider(db):
    """Staff, but in no role: can log in to the admin and do nothing."""
    return _user("charlie", None)


# -- Google-style ID tokens for the job endpoints ---------------------------------
# Signed by a test RSA key whose public half a loopback HTTP server publishes, as
# Google publishes its own at https://www.googleapis.com/oauth2/v1/certs.


def _private_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _public_pem(key) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def keys():
    return {
        name: rsa.generate_private_key(public_exponent=65537, key_size=2048) for name in ("google", "other")
    }


@pytest.fixture(scope="module")
def certs_url(keys):
    """Serves {key id: public key PEM} like https://www.googleapis.com/oauth2/v1/certs."""
    body = json.dumps({"test-key-1": _public_pem(keys["google"])}).encode()

    class Certs(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Certs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/certs"
    server.shutdown()


@pytest.fixture
def job_settings(settings, certs_url):
    settings.JOBS_OIDC_AUDIENCE = AUDIENCE
    settings.JOBS_ALLOWED_EMAILS = [SCHEDULER]
    settings.JOBS_OIDC_CERTS_URL = certs_url


@pytest.fixture
def token(keys):
    def make(key="google", **overrides):
        now = int(time.time())
        claims = {
            "iss": "https://accounts.google.com",
            "aud": AUDIENCE,
            "sub": "1234567890",
            "email": SCHEDULER,
            "email_verified": True,
            "iat": now,
            "exp": now + 3600,
            **overrides,
        }
        signer = crypt.RSASigner.from_string(_private_pem(keys[key]), key_id="test-key-1")
        return jwt.encode(signer, claims).decode()

    return make


@pytest.fixture(scope="session")
def emulator_kind(firestore_emulator) -> str:
    """`npm` or `google`: which emulator this session's tests run on."""
    return configured_kind()


# What a test that uses the database asks pytest-django for.
DATABASE_FIXTURES = {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback"}


def uses_the_database(item) -> bool:
    names = set(getattr(item, "fixturenames", ()))
    return item.get_closest_marker("django_db") is not None or bool(names & DATABASE_FIXTURES)


@pytest.hookimpl(trylast=True)  # after tests/e2e/conftest.py has marked its journeys
def pytest_collection_modifyitems(config, items):
    """DATABASE_INDEPENDENT_TESTS_RAN=1 (CI's PostgreSQL pass) skips, saying so,
    the tests marked `same_on_every_database` that use no database of the
    test run: they ran in the same CI's defaults pass, and DATABASE_URL and
    REDIS_URL cannot change what they do (they touch no database, or start
    processes on a SQLite file and the ORM broker of their own).

    FIRESTORE_TESTS_ONLY=1 keeps the tests that touch Firestore (those that use the
    emulator, through any fixture): `.ci/run`'s pass on Google's emulator, where the
    rest would only repeat the first pass."""
    if os.environ.get("DATABASE_INDEPENDENT_TESTS_RAN") == "1":
        skip = pytest.mark.skip(
            reason="DATABASE_INDEPENDENT_TESTS_RAN: ran in this CI's defaults pass; no database "
            "of this run can change what it does"
        )
        for item in items:
            if item.get_closest_marker("same_on_every_database") and not uses_the_database(item):
                item.add_marker(skip)
    if os.environ.get("FIRESTORE_TESTS_ONLY") != "1":
        return
    kept = [item for item in items if "firestore_emulator" in getattr(item, "fixturenames", ())]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept
