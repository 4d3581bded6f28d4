"""Alerts: rules kept in the database, alerts with state, every notification attempt."""

from django.conf import settings
from django.db import models
from django.utils.text import capfirst

from revassure.formatting import points
from revassure.models import WaitingAnnouncement
from revassure.outbox import Outbox
from revassure.sealing.models import AppendOnly
from revassure.waiting import WaitingKind


class RuleName(models.TextChoices):
    VIOLATIONS_FOUND = "violations_found", "violations found"
    DRIFT_ABOVE = "drift_above", "drift above a threshold"
    LIABILITY_MISMATCH = "liability_mismatch", "liability mismatch"
    RECONCILIATION_STALE = "reconciliation_stale", "reconciliation stale"
    JOB_FAILED = "job_failed", "job failed"
    WEBHOOKS_UNHEALTHY = "webhooks_unhealthy", "webhooks unhealthy"
    FREEZE_TOO_LONG = "freeze_too_long", "freeze on too long"
    APPROVALS_WAITING = "approvals_waiting", "approvals waiting"
    MIGRATION_STALLED = "migration_stalled", "migration stalled"
    BREAK_OLDER_THAN = "break_older_than", "break older than N days"
    WATCHER_DOWN = "watcher_down", "watcher down or behind"
    COULD_NOT_EVALUATE = "could_not_evaluate", "could not evaluate"
    TOO_MANY_ALERTS = "too_many_alerts", "too many alerts at once"


class Channel(models.TextChoices):
    EMAIL = "email"
    WEBHOOK = "webhook"


class AlertRule(models.Model):
    """One rule: its condition is code (observability/rules.py), its numbers are here."""

    name = models.CharField(max_length=32, choices=RuleName, unique=True)
    description = models.TextField(blank=True)
    threshold = models.BigIntegerField(default=0)
    # A rule with two conditions (webhooks_unhealthy: rejected signatures) keeps its second number here.
    second_threshold = models.BigIntegerField(
        null=True, blank=True, help_text="Only for rules whose description names a second threshold."
    )
    # The condition must hold this long before the alert opens (0: at once).
    for_minutes = models.PositiveIntegerField(default=0)
    # While it lasts and nobody acknowledged it, notify again this often.
    repeat_minutes = models.PositiveIntegerField(default=240)
    channels = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.title

    @property
    def title(self) -> str:
        """The rule's name as people read it, its N given: "Break older than 7 days"."""
        text = capfirst(self.get_name_display())
        return text.replace(" N ", f" {points(self.threshold)} ") if " N " in text else text


class AlertRuleChange(AppendOnly):
    """Append-only history of rule changes: who, when, why, what (the model and
    the database refuse an edit or a deletion)."""

    APPEND_ONLY = "an alert rule's history is append-only"

    rule = models.ForeignKey(AlertRule, on_delete=models.PROTECT, related_name="changes")
    changes = models.JSONField(default=dict)  # field: [before, after]
    reason = models.TextField()
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.rule} changed by {self.actor}"


class AlertState(models.TextChoices):
    PENDING = "pending", "pending (condition not held long enough)"
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    SILENCED = "silenced"
    RESOLVED = "resolved"


ACTIVE = (AlertState.OPEN, AlertState.ACKNOWLEDGED, AlertState.SILENCED)


class Alert(models.Model):
    """One episode of one rule's condition (per key: a migration, ...), from the
    evaluation that saw it to the one that saw it clear."""

    rule = models.ForeignKey(AlertRule, on_delete=models.PROTECT, related_name="alerts")
    key = models.CharField(max_length=128, blank=True)
    state = models.CharField(max_length=16, choices=AlertState, default=AlertState.PENDING)
    summary = models.TextField()
    started_at = models.DateTimeField()  # when the condition was first seen
    opened_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    last_notified_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    silenced_until = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)  # the reason of the acknowledgement or silence

    class Meta:
        ordering = ["-started_at", "-id"]
        permissions = [("acknowledge_alert", "Can acknowledge and silence alerts")]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "key"],
                condition=~models.Q(state="resolved"),
                name="one_unresolved_alert_per_rule_and_key",
            )
        ]
        indexes = [models.Index(fields=["state"])]

    def __str__(self) -> str:
        return f"{self.rule}: {self.summary}"

    def as_json(self) -> dict:
        return {
            "id": self.pk,
            "rule": self.rule.name,
            "summary": self.summary,
            "started_at": self.started_at.isoformat(),
        }


class NotificationKind(models.TextChoices):
    FIRING = "firing"
    REPEAT = "repeat", "firing again"
    RESOLVED = "resolved"


class AlertSend(Outbox):
    """One notification of an alert to send by one channel: written in the
    transaction of the evaluation that decided it, taken by a worker of the
    notify cluster under a lease for each attempt (every attempt is kept as an
    AlertNotification), and handed to a worker again by the minute's sweep if
    its task or its worker was lost (the outbox: revassure/outbox.py)."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="sends")
    kind = models.CharField(max_length=16, choices=NotificationKind)
    channel = models.CharField(max_length=16, choices=Channel)

    class Meta(Outbox.Meta):
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} by {self.channel} ({self.state})"


class AlertNotification(models.Model):
    """One attempt to tell someone: the channel, and what came back."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=16, choices=NotificationKind)
    channel = models.CharField(max_length=16, choices=Channel)
    attempt = models.PositiveSmallIntegerField(default=1)
    ok = models.BooleanField(default=False)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        outcome = "sent" if self.ok else "failed"
        return f"{self.kind} by {self.channel}, attempt {self.attempt}: {outcome}"


class Inbox(models.Model):
    """Not stored: the "Waiting for me" page's place in the admin (a menu entry,
    `admin:inbox`), as wallets.Wallet gives the wallet page its own. The items
    are computed for the viewer by observability/inbox.py."""

    class Meta:
        managed = False
        default_permissions = ()
        verbose_name = "waiting for me"
        verbose_name_plural = "waiting for me"

    def __str__(self) -> str:
        return "waiting for me"


class InboxNotice(models.Model):
    """One email telling one person that one item waits for them: claimed before
    it is sent (unique), so each is sent once whatever retries or repeats."""

    kind = models.CharField(
        max_length=32, choices=[(kind.value, kind.value.replace("_", " ")) for kind in WaitingKind]
    )
    object_id = models.BigIntegerField()
    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    sent = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    # The announcement whose worker claimed it: a later attempt of the same
    # announcement (its worker died) sends it if it was never sent nor failed.
    announcement = models.ForeignKey(
        WaitingAnnouncement, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "object_id", "recipient"], name="one_notice_per_item_and_person"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.object_id} to {self.recipient}"
