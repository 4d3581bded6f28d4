"""Where alerts go: email through Django's backend (plain text and HTML, composed by
observability.alert_mail), and a Slack-compatible JSON webhook.

Each send returns (ok, status code, error); it never raises, so one channel
that fails never stops the other. Each ends within OUTBOUND_DEADLINE_SECONDS
in all (revassure.outbound), however slowly the other end answers: a worker
sending an alert is back at its work by then, and the attempt is recorded as
failed and retried with backoff (observability.alerts.send).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import time

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends import smtp
from django.core.mail.backends.base import BaseEmailBackend

from observability import alert_mail
from observability.models import Alert, NotificationKind
from revassure import outbound

Result = tuple[bool, int | None, str]


def status_of(kind: str) -> str:
    return "resolved" if kind == NotificationKind.RESOLVED else "firing"


def body_of(alert: Alert, kind: str) -> dict:
    """The webhook's JSON: Slack shows `text` (the email's subject and the alert's link)."""
    url = alert_mail.alert_url(alert)
    return {
        "text": f"{alert_mail.subject(alert, kind)} {url}",
        "status": status_of(kind),
        "rule": alert.rule.name,
        "rule_title": alert.rule.title,
        "alert_id": alert.pk,
        "url": url,
        "summary": alert.summary,
        "started_at": alert.started_at.isoformat(),
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
    }


def signature(body: bytes, secret: str, timestamp: int) -> str:
    """`t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def send_email(alert: Alert, kind: str) -> Result:
    if not settings.ALERT_EMAILS:
        return False, None, "ALERT_EMAILS is not set"
    mail = alert_mail.compose(alert, kind)
    seconds = settings.OUTBOUND_DEADLINE_SECONDS
    started = time.monotonic()
    try:
        message = EmailMultiAlternatives(
            mail.subject,
            mail.text,
            settings.ALERT_FROM_EMAIL,
            settings.ALERT_EMAILS,
            connection=mail_connection(seconds),
        )
        message.attach_alternative(mail.html, "text/html")
        message.send()
    except Exception as exc:  # the backend's errors vary (SMTP, OS, ...): all are a failed attempt
        if time.monotonic() - started >= seconds:
            return False, None, f"no answer within the deadline of {seconds:g} s ({type(exc).__name__})"
        return False, None, f"{type(exc).__name__}: {exc}"
    return True, None, ""


def mail_connection(seconds: float) -> BaseEmailBackend:
    """The configured email backend; over SMTP, one whose conversation ends within `seconds`."""
    connection = get_connection()
    if isinstance(connection, smtp.EmailBackend) and not isinstance(connection, outbound.SMTPBackend):
        connection = outbound.SMTPBackend(seconds=seconds)
    return connection


def send_webhook(alert: Alert, kind: str) -> Result:
    if not settings.ALERT_WEBHOOK_URL:
        return False, None, "ALERT_WEBHOOK_URL is not set"
    body = json.dumps(body_of(alert, kind)).encode()
    headers = {"Content-Type": "application/json"}
    if settings.ALERT_WEBHOOK_SECRET:
        headers["X-Revassure-Signature"] = signature(body, settings.ALERT_WEBHOOK_SECRET, int(time.time()))
    try:
        answer = outbound.request(
            "POST",
            settings.ALERT_WEBHOOK_URL,
            seconds=settings.OUTBOUND_DEADLINE_SECONDS,
            body=body,
            headers=headers,
        )
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return (
            False,
            None,
            str(exc) if isinstance(exc, outbound.DeadlineExceeded) else f"{type(exc).__name__}: {exc}",
        )
    if not 200 <= answer.status < 300:
        return False, answer.status, f"HTTP {answer.status}"
    return True, answer.status, ""


SENDERS = {"email": send_email, "webhook": send_webhook}


def configured() -> list[str]:
    """The channels this environment can use."""
    return [
        name
        for name, on in (
            ("email", bool(settings.ALERT_EMAILS)),
            ("webhook", bool(settings.ALERT_WEBHOOK_URL)),
        )
        if on
    ]
