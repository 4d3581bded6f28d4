"""Item 7 of issue 27: a slow receiver must not hold a worker. An alert webhook
that sends one byte every second never trips a per-read timeout; an SMTP server
that takes its time over a message; a certificate server that trickles. Each
outbound call gives up at its total deadline (OUTBOUND_DEADLINE_SECONDS) and
the outcome is recorded: the alert's notification attempt failed, saying why,
and its retry scheduled; the job API answers 401 at once."""

import asyncio
import threading
import time

import pytest
from aiosmtpd.controller import Controller
from django.utils import timezone
from django_q.models import Schedule

from devtools.emulator import free_port
from observability import alerts
from observability.models import Alert, AlertNotification, AlertRule, AlertSend, AlertState
from tests.helpers import Trickler

DEADLINE = 2.0


@pytest.fixture
def trickler():
    server = Trickler()
    yield server
    server.close()


# Committed rows (the send runs in a thread of its own, see `timed`); the seeded
# rows restored after each test, as the other transactional tests do.
committed = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture
def alert(settings):
    settings.OUTBOUND_DEADLINE_SECONDS = DEADLINE
    rule = AlertRule.objects.get(name="violations_found")
    now = timezone.now()
    return Alert.objects.create(
        rule=rule, state=AlertState.OPEN, summary="run 1 found 2 violations", started_at=now, opened_at=now
    )


def send(alert, channel):
    """The first attempt of the alert's firing notification by `channel`, as the
    notify cluster's worker makes it (the send stored first, as an evaluation does)."""
    queued = AlertSend.objects.create(alert=alert, kind="firing", channel=channel)
    return alerts.send(queued.pk, 1)


def timed(func, *args):
    """(func's result, seconds it took); fails if it is still at work well past the deadline."""
    done = []
    started = time.monotonic()
    worker = threading.Thread(target=lambda: done.append(func(*args)), daemon=True)
    worker.start()
    worker.join(DEADLINE + 5)
    seconds = time.monotonic() - started
    assert done, f"still sending after {seconds:.1f} s (the deadline is {DEADLINE:g} s)"
    return done[0], seconds


@committed
def test_an_alert_webhook_that_trickles_is_given_up_at_the_deadline_and_retried(alert, settings, trickler):
    settings.ALERT_WEBHOOK_URL = f"http://127.0.0.1:{trickler.port}/hooks/alerts"

    notification, seconds = timed(send, alert, "webhook")

    assert seconds < DEADLINE + 1.5, f"the worker was held {seconds:.1f} s"
    assert not notification.ok
    assert f"deadline of {DEADLINE:g} s" in notification.error
    saved = AlertNotification.objects.get()
    assert (saved.channel, saved.ok, saved.attempt) == ("webhook", False, 1)
    assert Schedule.objects.filter(name=f"alert-{alert.pk}-firing-webhook-attempt-2").exists()


class SlowMailbox:
    """aiosmtpd handler that takes its time over each message before accepting it."""

    def __init__(self, seconds):
        self.seconds, self.messages = seconds, []

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.seconds)
        self.messages.append(envelope.content)
        return "250 Message accepted for delivery"


@committed
def test_an_smtp_server_slower_than_the_deadline_is_given_up_and_the_attempt_recorded(alert, settings):
    mailbox = SlowMailbox(seconds=8)  # below the 10 s per-read timeout: only a deadline stops it
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
        settings.EMAIL_USE_TLS, settings.EMAIL_TIMEOUT = False, 10
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        settings.ALERT_EMAILS = ["ops@example.com"]

        notification, seconds = timed(send, alert, "email")
    finally:
        controller.stop()

    assert seconds < DEADLINE + 1.5, f"the worker was held {seconds:.1f} s"
    assert not notification.ok and f"deadline of {DEADLINE:g} s" in notification.error
    assert Schedule.objects.filter(name=f"alert-{alert.pk}-firing-email-attempt-2").exists()


@committed
def test_an_smtp_server_in_time_still_gets_the_alert(alert, settings):
    mailbox = SlowMailbox(seconds=0)
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
        settings.EMAIL_USE_TLS = False
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        settings.ALERT_EMAILS = ["ops@example.com"]

        notification = send(alert, "email")
    finally:
        controller.stop()

    assert notification.ok, notification.error
    assert len(mailbox.messages) == 1


@committed
def test_a_job_call_whose_signing_certificates_trickle_is_refused_at_the_deadline(
    client, settings, trickler, job_settings, token
):
    settings.OUTBOUND_DEADLINE_SECONDS = DEADLINE
    settings.JOBS_OIDC_CERTS_URL = f"http://127.0.0.1:{trickler.port}/certs"
    bearer = f"Bearer {token()}"

    response, seconds = timed(
        lambda: client.post(
            "/api/jobs/reconcile", data={}, content_type="application/json", HTTP_AUTHORIZATION=bearer
        )
    )

    assert response.status_code == 401
    assert seconds < DEADLINE + 1.5, f"the request was held {seconds:.1f} s"
