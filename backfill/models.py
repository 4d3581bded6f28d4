from django.db import models


class EventStatus(models.TextChoices):
    RECEIVED = "received"
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    DEFERRED = "deferred"
    QUARANTINED = "quarantined"
    FAILED = "failed"


class EventSource(models.TextChoices):
    WEBHOOK = "webhook"
    REPLAY = "replay"


class ProviderEventDelivery(models.Model):
    """One delivery of a provider event, stored raw before anything is applied.

    Every delivery is kept (a resent event is a second row whose outcome is
    `duplicate`), so what the provider sent can always be shown and replayed.
    """

    source = models.CharField(max_length=16, choices=EventSource)
    received_at = models.DateTimeField(auto_now_add=True)
    raw = models.TextField()
    # Filled from the body when it parses; blank when it does not.
    event_id = models.CharField(max_length=128, blank=True, db_index=True)
    event_type = models.CharField(max_length=32, blank=True)
    user_id = models.CharField(max_length=128, blank=True)
    entry_id = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=EventStatus, default=EventStatus.RECEIVED)
    reason = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["status", "received_at"])]

    def __str__(self) -> str:
        return f"{self.event_id or 'unparsed'} ({self.status})"
