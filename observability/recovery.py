"""Notifications whose task or worker was lost are sent: the minute's sweep.

An alert's send (AlertSend) and a "waiting for you" announcement
(WaitingAnnouncement) are outbox rows written with the decision
(revassure/outbox.py). The sweep hands to a notify worker again:

- a row whose worker's lease lapsed (it died mid-attempt): its next attempt;
- a row never taken, once the notify cluster's broker holds nothing and it was
  queued (or its retry was due) more than a lease ago, or whatever waits, once
  queued longer than a task may wait there: its next attempt.

Handing a row out twice is harmless: the second task finds its attempt taken.
"""

from __future__ import annotations

import logging

from observability import alerts
from observability.models import AlertSend
from revassure import outbox, waiting
from revassure.models import WaitingAnnouncement

log = logging.getLogger(__name__)

# A worker that died this many times in one announcement's attempts (each one
# killed at the notify cluster's timeout) is not followed by another.
ANNOUNCEMENT_ATTEMPTS = 3


def sweep() -> dict[str, int]:
    """Hand lost notifications to the notify workers again; what was found, by kind."""
    sends = outbox.lost(AlertSend, max_attempts=alerts.MAX_ATTEMPTS)
    for send_id, attempt in sends:
        alerts.enqueue(send_id, attempt)
    announcements = outbox.lost(WaitingAnnouncement, max_attempts=ANNOUNCEMENT_ATTEMPTS)
    for announcement_id, attempt in announcements:
        waiting.enqueue(announcement_id, attempt)
    found = {"alert_sends": len(sends), "waiting_announcements": len(announcements)}
    if any(found.values()):
        log.warning("notifications lost with a worker handed out again", extra=found)
    return found
