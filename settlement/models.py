from typing import Any, NoReturn

from django.conf import settings
from django.db import models

from revassure.logs import correlation_id_or_blank
from revassure.sealing.models import AppendOnly, FinishedRecordError, SealedRun


class RunStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    # A dry run's scratch while it matches (committed chunk by chunk, so it never
    # holds the database's write lock for long); removed when it ends, and shown
    # nowhere: a dry run keeps nothing.
    DRY_RUN = "dry_run", "dry run"


FINISHED = (RunStatus.COMPLETED, RunStatus.FAILED)


class RunTakenOver(Exception):
    """The run is no longer this process's: its lease lapsed, the minute's sweep
    handed it back, and another worker matches it now. Stop, store nothing more."""


class RunTrigger(models.TextChoices):
    COMMAND = "command"
    ADMIN = "admin", "admin upload"
    API = "api", "API"
    DEMO = "demo", "seeded demo"


class Outcome(models.TextChoices):
    """What a statement row (or an applied payment with no row) came to."""

    MATCHED = "matched", "matched"
    MISSING_IN_LEDGER = "missing_in_ledger", "missing in the ledger"
    MISSING_AT_PROVIDER = "missing_at_provider", "missing at the provider"
    POINTS_MISMATCH = "points_mismatch", "points mismatch"
    USER_MISMATCH = "user_mismatch", "user mismatch"
    UNREVERSED = "unreversed", "unreversed"
    DUPLICATE_IN_STATEMENT = "duplicate_in_statement", "duplicate in the statement"
    NOT_SETTLED = "not_settled", "credited, not settled"
    MALFORMED = "malformed", "malformed row"


# The outcomes a statement's rows can have, in the order reports show them
# (missing_at_provider rows come from the ledger and the stored deliveries, not from the file).
OUTCOMES = tuple(o.value for o in Outcome if o != Outcome.MALFORMED)
BREAKS = tuple(o for o in OUTCOMES if o != Outcome.MATCHED)


class SettlementRun(SealedRun):
    """One settlement statement matched against the ledger and the stored
    deliveries: the report. Sealed once complete (revassure.sealing: a checksum
    over its canonical form, chained to the previous completed settlement run);
    the model, the admin, the database and verify_reports then refuse or detect
    any change."""

    FINISHED = FINISHED

    status = models.CharField(max_length=16, choices=RunStatus, default=RunStatus.PENDING)
    trigger = models.CharField(max_length=16, choices=RunTrigger)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    correlation_id = models.CharField(max_length=128, blank=True, default=correlation_id_or_blank)
    # The file as named (upload name, path or gs:// URI) and where a worker reads it.
    source = models.CharField(max_length=500)
    path = models.CharField(max_length=500, blank=True)
    file_sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    file_bytes = models.BigIntegerField(null=True, blank=True)
    # The earlier completed run of the very same file (same SHA-256), if any.
    repeat_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    period_given = models.BooleanField(default=False)

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # The process matching it (hostname:pid) and, for a worker's run, its lease
    # (revassure/leases.py), renewed while it matches: once lapsed, the minute's
    # sweep hands the run back to a worker, which starts it over from the kept
    # file (services.resume_abandoned). When it was last handed to the broker,
    # and how many times a worker took it.
    worker = models.CharField(max_length=255, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)

    expected_rows = models.PositiveIntegerField(null=True, blank=True)
    rows = models.PositiveIntegerField(default=0)  # statement rows read, malformed included
    matched = models.PositiveIntegerField(default=0)
    missing_in_ledger = models.PositiveIntegerField(default=0)
    missing_at_provider = models.PositiveIntegerField(default=0)
    points_mismatch = models.PositiveIntegerField(default=0)
    user_mismatch = models.PositiveIntegerField(default=0)
    unreversed = models.PositiveIntegerField(default=0)
    duplicate_in_statement = models.PositiveIntegerField(default=0)
    not_settled = models.PositiveIntegerField(default=0)
    malformed_rows = models.PositiveIntegerField(default=0)
    # {outcome: {"points": int, "money": {currency: "decimal"}}}: what is at stake.
    totals = models.JSONField(default=dict, blank=True)

    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]
        permissions = [
            ("run_settlement", "Can import a settlement statement"),
            ("export_settlementrun", "Can export a settlement report"),
        ]

    def __str__(self) -> str:
        return f"Settlement run {self.pk} ({self.status})"

    def sealed_name(self) -> str:
        return f"settlement run {self.pk}"

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise FinishedRecordError("settlement runs are reports and cannot be deleted")

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in OUTCOMES}


class SettlementRow(models.Model):
    """One statement row's outcome (line set), or one payment credited that the
    statement lacks (missing_at_provider: no line; its delivery when one is stored)."""

    # No index of its own: the two below lead with the run (one index fewer to
    # keep up for each of a statement's rows).
    run = models.ForeignKey(SettlementRun, on_delete=models.PROTECT, related_name="results", db_index=False)
    line = models.PositiveIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=32, choices=Outcome)
    type = models.CharField(max_length=16, blank=True)
    payment_id = models.CharField(max_length=128, blank=True)
    reference = models.CharField(max_length=128, blank=True)
    user_id = models.CharField(max_length=128, blank=True)
    points = models.BigIntegerField(null=True, blank=True)
    amount = models.DecimalField(max_digits=24, decimal_places=6, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    status = models.CharField(max_length=16, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    entry_id = models.CharField(max_length=200, blank=True)
    # Where the identity was found credited, and with what amount (as read).
    ledger_uid = models.CharField(max_length=256, blank=True)
    ledger_amount = models.BigIntegerField(null=True, blank=True)
    # A stored delivery of this identity (for missing_in_ledger: one replay can apply).
    delivery = models.ForeignKey(
        "backfill.ProviderEventDelivery", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    replayable = models.BooleanField(default=False)
    detail = models.TextField(blank=True)
    raw = models.TextField(blank=True)  # a malformed row as written (bounded)

    class Meta:
        ordering = ["run", "id"]
        permissions = [("explain_settlementrow", "Can mark a settlement row explained")]
        indexes = [
            models.Index(fields=["run", "outcome"]),
            models.Index(fields=["run", "entry_id"]),
        ]
        verbose_name = "settlement row"

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else f"delivery {self.delivery_id}"
        return f"{where}: {self.get_outcome_display()}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if SettlementRun.objects.filter(pk=self.run_id, status__in=FINISHED).exists():
            raise FinishedRecordError(f"settlement run {self.run_id} is finished; its rows cannot change")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise FinishedRecordError("settlement rows are part of a report and cannot be deleted")


class FollowUpKind(models.TextChoices):
    REPLAY = "replay", "replay of stored deliveries"
    REVERSAL = "reversal", "reversal backfill"
    ADJUSTMENT = "adjustment", "manual adjustment"
    EXPLAINED = "explained"


class FollowUp(AppendOnly):
    """What someone did about a row, outside the sealed report: the migration
    or request it went to, or an approver's explanation. Append-only."""

    APPEND_ONLY = "follow-ups are append-only"

    row = models.ForeignKey(SettlementRow, on_delete=models.PROTECT, related_name="follow_ups")
    kind = models.CharField(max_length=16, choices=FollowUpKind)
    migration = models.ForeignKey(
        "backfill.DataMigration", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    request = models.ForeignKey(
        "reconciliation.BalanceRequest", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["row"], condition=models.Q(kind="explained"), name="one_explanation_per_row"
            )
        ]

    def __str__(self) -> str:
        return f"row {self.row_id}: {self.kind}"
