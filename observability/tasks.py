"""django-q2 tasks of the observability app: thin, by dotted path."""

import logging

from observability import alerts

log = logging.getLogger(__name__)


def evaluate_alerts() -> dict:
    return alerts.evaluate().as_json()


def send_notification(alert_id: int, kind: str, channel: str, attempt: int = 1) -> bool:
    return alerts.send(alert_id, kind, channel, attempt).ok
