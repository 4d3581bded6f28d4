from typing import Any

from django.conf import settings
from django.db import models

from revassure.logs import correlation_id_or_blank


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
    migration = models.ForeignKey(
        "DataMigration", null=True, blank=True, on_delete=models.PROTECT, related_name="deliveries"
    )
    line = models.PositiveIntegerField(null=True, blank=True)  # in the replayed file, from 1

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["status", "received_at"])]
        verbose_name = "provider event delivery"
        verbose_name_plural = "provider event deliveries"

    def __str__(self) -> str:
        return f"{self.event_id or 'unparsed'} ({self.status})"


class WebhookDrain(models.Model):
    """The one row through which the workers share the applying of webhook
    deliveries: `queued` while a request for a drainer to look is up (raised by
    arrivals and by tasks that found the lease taken; a burst of arrivals
    enqueues a handful of tasks, not one each), and the lease of the one worker draining
    now (so deliveries are applied one batch after another, in arrival order
    per wallet, by one worker at a time; a lease whose worker died expires)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    queued = models.BooleanField(default=False)
    queued_at = models.DateTimeField(null=True, blank=True)
    lease = models.CharField(max_length=36, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_drained_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return "webhook drain"


class RejectedWebhook(models.Model):
    """A request to the webhook refused for its signature: nothing of it is stored
    as a delivery, but that it came, when, from where and why it was refused is
    kept, so a sender on an old secret (or a prober) shows up in the admin and
    in the `webhooks_unhealthy` rule."""

    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    reason = models.CharField(max_length=200)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    body_bytes = models.PositiveIntegerField()
    body_sha256 = models.CharField(max_length=64)

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"rejected at {self.received_at:%Y-%m-%d %H:%M:%S}: {self.reason}"


class MigrationStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


# The one state machine of data migrations: from -> allowed next states.
# running -> running is a worker taking over (a continuation, or a worker
# replacing one that died); completed and cancelled are final.
MIGRATION_TRANSITIONS: dict[str, set[MigrationStatus]] = {
    MigrationStatus.PENDING: {MigrationStatus.RUNNING, MigrationStatus.PAUSED, MigrationStatus.CANCELLED},
    MigrationStatus.RUNNING: {
        MigrationStatus.RUNNING,
        MigrationStatus.PAUSED,
        MigrationStatus.CANCELLED,
        MigrationStatus.COMPLETED,
        MigrationStatus.FAILED,
    },
    MigrationStatus.PAUSED: {MigrationStatus.PENDING, MigrationStatus.CANCELLED},
    MigrationStatus.FAILED: {MigrationStatus.PENDING},
}


def sources_of(status: str) -> list[str]:
    """The states a migration may move to `status` from."""
    return [source for source, targets in MIGRATION_TRANSITIONS.items() if status in targets]


class InvalidTransition(Exception):
    pass


class MigrationKind(models.TextChoices):
    REPLAY_FILE = "replay_file", "replay of an export"
    REPLAY_STORED = "replay_stored", "replay of stored deliveries"
    REVERSAL_CSV = "reversal_csv", "reversals from finance's CSV"


class MigrationSource(models.TextChoices):
    """Where a migration's items come from, and so who can run it: workers read
    uploads (kept where they can read them) and the database; a file named on
    a command line may be on another machine, so only its command runs it."""

    UPLOAD = "upload", "uploaded in the admin"
    COMMAND = "command", "a file on the command line"
    DATABASE = "database", "deliveries stored in the database"


class DataMigration(models.Model):
    """One backfill run (a replay of an export, ...), with its progress and outcomes.

    `total` always equals the sum of the outcome counts once the run is done;
    `checkpoint` is the number of items fully handled, to resume from.
    """

    kind = models.CharField(max_length=32, choices=MigrationKind)
    source = models.CharField(max_length=16, choices=MigrationSource)
    parameters = models.JSONField(default=dict, blank=True)
    dry_run = models.BooleanField(default=False)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # The id of the request or command that started it; its worker logs under it too.
    correlation_id = models.CharField(max_length=128, blank=True, default=correlation_id_or_blank)
    status = models.CharField(max_length=16, choices=MigrationStatus, default=MigrationStatus.PENDING)
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    applied = models.PositiveIntegerField(default=0)
    duplicate = models.PositiveIntegerField(default=0)
    deferred = models.PositiveIntegerField(default=0)
    quarantined = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    checkpoint = models.PositiveIntegerField(default=0)
    plan = models.JSONField(default=dict, blank=True)
    plan_checksum = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # When its worker last made progress: a running migration silent for longer
    # than any task may take lost its worker and is handed to another.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The claim of the worker running it: each claim writes a fresh one, and a
    # worker saves progress only while the lease is still its own, so a worker
    # that lost its migration to another stops instead of counting twice.
    lease = models.CharField(max_length=32, blank=True)
    # Time spent paused (or failed, until resumed), so that rate and time left
    # are measured over running time only: a pause does not slow the rate down.
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_seconds = models.FloatField(default=0)
    # A dry run's plan approved by a second person (never who planned it), before a
    # real run may be bound to it: backfill/plan_approval.py.
    plan_approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    plan_approved_at = models.DateTimeField(null=True, blank=True)
    plan_approval_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("approve_plan", "Can approve a backfill plan someone else made")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.status})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # The state machine holds here too, whatever code saves the row.
        if self.pk:
            stored = type(self).objects.filter(pk=self.pk).values_list("status", flat=True).first()
            if (
                stored is not None
                and stored != self.status
                and self.status not in MIGRATION_TRANSITIONS.get(stored, ())
            ):
                raise InvalidTransition(f"a {stored} migration cannot become {self.status}")
        super().save(*args, **kwargs)

    def outcomes(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in OUTCOMES}


OUTCOMES = ("applied", "duplicate", "deferred", "quarantined", "failed")


class PlanItem(models.Model):
    """What a dry run decided for one line of its file, and why.

    Kept apart from ProviderEventDelivery on purpose: a plan item was never
    received and is never applied, replayed or counted as a delivery (the
    completeness check and stored replays read deliveries only)."""

    migration = models.ForeignKey(DataMigration, on_delete=models.CASCADE, related_name="plan_items")
    line = models.PositiveIntegerField()  # in the planned file, from 1
    event_id = models.CharField(max_length=128, blank=True)
    event_type = models.CharField(max_length=32, blank=True)
    user_id = models.CharField(max_length=128, blank=True)
    entry_id = models.CharField(max_length=200, blank=True)
    amount = models.BigIntegerField(null=True, blank=True)  # signed points the entry would carry
    outcome = models.CharField(max_length=16, choices=EventStatus)
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["migration", "line"]
        constraints = [models.UniqueConstraint(fields=["migration", "line"], name="one_plan_item_per_line")]

    def __str__(self) -> str:
        return f"line {self.line}: {self.outcome}"
