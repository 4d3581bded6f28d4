import glob
import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import time_machine
from aiosmtpd.controller import Controller
from prometheus_client import multiprocess

from observability import alerts

METRICS_TOKEN = "metrics-test-token"


def _wipe_old_files() -> None:
    """The test directory is shared by every test run on the machine, some in
    other process namespaces (so a process id says nothing about a file): only
    files untouched for a day go. Tests read their own process's files."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    for path in Path(directory).glob("*.db"):
        if time.time() - path.stat().st_mtime > 24 * 3600:
            path.unlink(missing_ok=True)


_wipe_old_files()


@pytest.fixture
def run_evaluation(django_capture_on_commit_callbacks):
    """Evaluate at a time, the notification tasks running as a worker would."""

    def evaluate(at):
        with time_machine.travel(at, tick=False), django_capture_on_commit_callbacks(execute=True):
            return alerts.evaluate()

    return evaluate


@pytest.fixture
def metrics_token(settings):
    settings.METRICS_TOKEN = METRICS_TOKEN
    return METRICS_TOKEN


def own_samples() -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of this process's counters and
    histograms only (other test runs may share the directory)."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    files = glob.glob(os.path.join(directory, f"*_{os.getpid()}.db"))
    samples = {}
    for family in multiprocess.MultiProcessCollector.merge(files, accumulate=True):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


@pytest.fixture
def counted():
    """counted() -> a function giving how much a sample moved since the fixture was made."""
    before = own_samples()

    def moved(name: str, **labels) -> float:
        key = (name, tuple(sorted(labels.items())))
        return own_samples().get(key, 0) - before.get(key, 0)

    return moved


# -- real receivers: an SMTP server and an HTTP endpoint on loopback ports ----------


class Mailbox:
    """aiosmtpd handler: keeps each message's envelope and content."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            {"to": list(envelope.rcpt_tos), "content": envelope.content.decode("utf-8", errors="replace")}
        )
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp(settings):
    mailbox = Mailbox()
    port = _free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.ALERT_EMAILS = ["ops@example.com", "oncall@example.com"]
    settings.ALERT_FROM_EMAIL = "revassure-alerts@example.com"
    settings.SITE_URL = "https://backoffice.example.com/"
    yield mailbox
    controller.stop()


class Receiver:
    def __init__(self):
        self.requests = []
        self.statuses = []  # answered in turn; 200 once they run out

    def bodies(self):
        return [json.loads(request["body"]) for request in self.requests]


@pytest.fixture
def receiver(settings):
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append({"headers": dict(self.headers), "body": body})
            status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.ALERT_WEBHOOK_URL = f"http://127.0.0.1:{server.server_port}/hooks/alerts"
    settings.ALERT_WEBHOOK_SECRET = "alert-secret-test"
    yield state
    server.shutdown()
    server.server_close()
