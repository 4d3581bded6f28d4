"""django-q2 tasks of the observability app: thin, by dotted path."""

import logging

from observability import alerts, inbox

log = logging.getLogger(__name__)


def evaluate_alerts() -> dict:
    return alerts.evaluate().as_json()


def send_notification(alert_id: int, kind: str, channel: str, attempt: int = 1) -> bool:
    return alerts.send(alert_id, kind, channel, attempt).ok


def notify_waiting(kind: str, object_id: int) -> int:
    """Email the people an item newly waits for. Never raises: it runs after the
    action that caused it committed (in sync mode, in that very request)."""
    try:
        return inbox.notify(kind, object_id)
    except Exception:
        log.exception("waiting notice failed", extra={"kind": kind, "id": object_id})
        return 0
