from django.conf import settings
from django.db import models

from revassure.outbox import Outbox
from revassure.sealing.models import AppendOnly


class FeatureFlag(models.Model):
    """A runtime override of a flag's environment default.

    `override` null means "follow the environment default"; the row exists so
    ops can see every flag in the admin and who last touched it.
    """

    name = models.CharField(max_length=64, unique=True)
    override = models.BooleanField(null=True, blank=True)
    reason = models.TextField(blank=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class FeatureFlagChange(AppendOnly):
    """Append-only history of flag overrides: who, when, from what to what, why."""

    APPEND_ONLY = "a feature flag's history is append-only"

    flag = models.ForeignKey(FeatureFlag, on_delete=models.PROTECT, related_name="changes")
    previous = models.BooleanField(null=True)
    override = models.BooleanField(null=True)
    effective = models.BooleanField()
    reason = models.TextField()
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.flag.name} by {self.actor} at {self.created_at:%Y-%m-%d %H:%M}"


class FreezeEvent(AppendOnly):
    """Append-only history of the cutover freeze; the newest row is the state.

    While frozen, proposing, approving and executing manual adjustments and
    heals are refused; reconciliation and dry runs keep working.
    """

    APPEND_ONLY = "the freeze's history is append-only"

    frozen = models.BooleanField()
    reason = models.TextField()
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("manage_freeze", "Can freeze and unfreeze manual balance changes")]

    def __str__(self) -> str:
        state = "frozen" if self.frozen else "unfrozen"
        return f"{state} by {self.actor} at {self.created_at:%Y-%m-%d %H:%M} UTC"


class WaitingAnnouncement(Outbox):
    """An item that started waiting for people (revassure.waiting.announce), to be
    told by email: written in the transaction of the action that made it wait,
    taken by the notify cluster's worker under a lease, and handed to a worker
    again by the minute's sweep if its task or its worker was lost (the outbox:
    revassure/outbox.py). Who is told, once each, is the inbox's (InboxNotice)."""

    kind = models.CharField(max_length=32)  # a revassure.waiting.WaitingKind
    object_id = models.BigIntegerField()

    class Meta(Outbox.Meta):
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.object_id} waiting ({self.state})"
