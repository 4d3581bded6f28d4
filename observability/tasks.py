"""django-q2 tasks of the observability app: thin, by dotted path."""

import logging

from observability import alerts, inbox, recovery

log = logging.getLogger(__name__)


def evaluate_alerts() -> dict:
    return alerts.evaluate().as_json()


def send_notification(send_id: int, attempt: int = 1) -> bool:
    notification = alerts.send(send_id, attempt)
    return notification is not None and notification.ok


def notify_waiting(announcement_id: int, attempt: int = 1) -> int:
    """Email the people an item newly waits for. Never raises: it runs after the
    action that caused it committed (in sync mode, in that very request)."""
    try:
        return inbox.tell(announcement_id, attempt)
    except Exception:
        log.exception("waiting notice failed", extra={"announcement_id": announcement_id})
        return 0


def sweep_notifications() -> dict:
    """Every minute: notifications whose task or worker was lost are sent (recovery.sweep)."""
    return recovery.sweep()
