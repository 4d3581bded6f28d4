"""Where alerts go: email through Django's backend, and a Slack-compatible JSON webhook.

Each send returns (ok, status code, error); it never raises, so one channel
that fails never stops the other.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request

from django.conf import settings
from django.core.mail import EmailMessage

from observability.models import Alert, NotificationKind

Result = tuple[bool, int | None, str]
TIMEOUT_SECONDS = 10


def status_of(kind: str) -> str:
    return "resolved" if kind == NotificationKind.RESOLVED else "firing"


def text_of(alert: Alert, kind: str) -> str:
    word = {NotificationKind.FIRING: "FIRING", NotificationKind.REPEAT: "STILL FIRING"}.get(kind, "RESOLVED")
    return f"[revassure] {word}: {alert.rule.get_name_display()}: {alert.summary}"


def body_of(alert: Alert, kind: str) -> dict:
    return {
        "text": text_of(alert, kind),
        "status": status_of(kind),
        "rule": alert.rule.name,
        "alert_id": alert.pk,
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
    body = json.dumps(body_of(alert, kind), indent=2)
    try:
        EmailMessage(text_of(alert, kind), body, settings.ALERT_FROM_EMAIL, settings.ALERT_EMAILS).send()
    except Exception as exc:  # the backend's errors vary (SMTP, OS, ...): all are a failed attempt
        return False, None, f"{type(exc).__name__}: {exc}"
    return True, None, ""


def send_webhook(alert: Alert, kind: str) -> Result:
    if not settings.ALERT_WEBHOOK_URL:
        return False, None, "ALERT_WEBHOOK_URL is not set"
    body = json.dumps(body_of(alert, kind)).encode()
    request = urllib.request.Request(settings.ALERT_WEBHOOK_URL, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    if settings.ALERT_WEBHOOK_SECRET:
        request.add_header(
            "X-Revassure-Signature", signature(body, settings.ALERT_WEBHOOK_SECRET, int(time.time()))
        )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            return True, response.status, ""
    except urllib.error.HTTPError as exc:
        return False, exc.code, f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return False, None, f"{type(exc).__name__}: {exc}"


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
