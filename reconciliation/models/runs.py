"""Reconciliation runs: the report (a sealed run), its violations and the chunks its workers check."""

from datetime import timedelta
from typing import Any, NoReturn

from django.conf import settings
from django.db import models

from revassure.formatting import signed
from revassure.sealing.models import FinishedRecordError, SealedRun


class RunStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


FINISHED = (RunStatus.COMPLETED, RunStatus.FAILED)


class RunTrigger(models.TextChoices):
    COMMAND = "command"
    ADMIN = "admin"
    SCHEDULE = "schedule"
    API = "api", "API"
    DEMO = "demo", "seeded demo history"
    WATCHER = "watcher", "real-time watcher"


class ReadMode(models.TextChoices):
    """How a run read Firestore (reconciliation/instant.py)."""

    POINT_IN_TIME = "point_in_time", "one instant (read time T0)"
    LIVE = "live", "live (each wallet when its chunk ran)"


class ReconciliationRun(SealedRun):
    """One reconciliation of wallets against their ledgers: the report.

    Counters move while the run is running (each chunk adds its share); once
    the run is finished the row is sealed (revassure.sealing): a checksum over
    its canonical form, chained to the previous completed run, and the model,
    the admin and the database (triggers, see migration 0002) all refuse to
    change it.
    """

    FINISHED = FINISHED

    status = models.CharField(max_length=16, choices=RunStatus, default=RunStatus.PENDING)
    trigger = models.CharField(max_length=16, choices=RunTrigger)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # The wallets asked for; empty means every wallet.
    scope_uids = models.JSONField(default=list, blank=True)
    correlation_id = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # The daily run's day (its occurrence's date, UTC), whoever started it (the
    # schedule's task or the sweep that found it missing): one run a day (constraint).
    scheduled_for = models.DateField(null=True, blank=True)

    chunks_total = models.PositiveIntegerField(null=True, blank=True)
    chunks_done = models.PositiveIntegerField(default=0)
    wallets_checked = models.BigIntegerField(default=0)
    violations_count = models.PositiveIntegerField(default=0)
    drift_count = models.PositiveIntegerField(default=0)
    malformed_count = models.PositiveIntegerField(default=0)
    total_abs_drift = models.BigIntegerField(default=0)
    # The programme's liability check: points held in wallets against points the
    # ledgers say were earned (integer amounts only).
    total_wallet_points = models.BigIntegerField(default=0)
    total_ledger_sum = models.BigIntegerField(default=0)

    # One instant: what the run read as of `read_time` (T0, the server's time when
    # it started), or why it read live. Blank for runs from before reads had a mode.
    read_mode = models.CharField(max_length=16, choices=ReadMode, blank=True)
    read_time = models.DateTimeField(null=True, blank=True)
    read_mode_reason = models.TextField(blank=True)
    # Wallets that disagreed at the first read but agreed at the live re-check:
    # [{"uid", "wallet_points", "ledger_sum", "delta"}] as first read, in uid order (sealed).
    cleared_at_recheck = models.JSONField(default=list, blank=True)
    # Who did the work, for ops (not part of the sealed report): while the run
    # lists its wallets, the lister's claim (a token) and its lease
    # (revassure/leases.py), which a worker takes over once it lapses; once
    # sealed, how many chunks each machine counted ({hostname: chunks}).
    lister = models.CharField(max_length=64, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    checked_by = models.JSONField(default=dict, blank=True)

    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]
        permissions = [
            ("run_reconciliation", "Can start a reconciliation run"),
            ("export_reconciliationrun", "Can export a reconciliation report"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["scheduled_for"],
                condition=models.Q(scheduled_for__isnull=False),
                name="one_scheduled_run_per_day",
            )
        ]

    def __str__(self) -> str:
        return f"Run {self.pk} ({self.status})"

    @property
    def liability_difference(self) -> int:
        return self.total_wallet_points - self.total_ledger_sum

    @property
    def duration(self) -> timedelta | None:
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None


class ViolationKind(models.TextChoices):
    DRIFT = "drift"
    MALFORMED = "malformed"


class Violation(models.Model):
    """A wallet whose cached points disagree with its ledger, confirmed in a transaction.

    `ledger_sum` counts integer amounts only; a malformed entry (an amount that
    is missing, not a number or not an integer) is listed in `details` and makes
    the violation `malformed`, never coerced into the sum. `wallet_points` and
    `delta` are null when the wallet's own points are not an integer.
    """

    run = models.ForeignKey(ReconciliationRun, on_delete=models.PROTECT, related_name="violations")
    uid = models.CharField(max_length=256)
    kind = models.CharField(max_length=16, choices=ViolationKind)
    wallet_points = models.BigIntegerField(null=True, blank=True)
    ledger_sum = models.BigIntegerField()
    delta = models.BigIntegerField(null=True, blank=True)
    entries = models.PositiveIntegerField()
    details = models.JSONField(default=dict, blank=True)
    # What the run's first read saw ({"wallet_points", "ledger_sum", "delta"}): at
    # its read time T0, or live; the fields above are the live re-check's, which
    # confirmed it. Null for runs from before first reads were recorded.
    at_read_time = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["run", "uid"]
        constraints = [
            models.UniqueConstraint(fields=["run", "uid"], name="one_violation_per_wallet_per_run")
        ]
        indexes = [models.Index(fields=["uid"])]

    def __str__(self) -> str:
        return f"{self.uid}: {self.get_kind_display().lower()} {signed(self.delta)}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if ReconciliationRun.objects.filter(pk=self.run_id, status__in=FINISHED).exists():
            raise FinishedRecordError(f"run {self.run_id} is finished; its violations cannot change")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise FinishedRecordError("violations are part of a report and cannot be deleted")


class ReconciliationChunk(models.Model):
    """A slice of a run's wallets that one worker checks: [[uid, points], ...].

    A worker takes it under a lease (`worker`, `lease_until`): another may take
    it once the lease lapses (its worker died); `done` is claimed once, with the
    run's counters, by whichever finishes first. `queued_at` is when it was last
    handed to the broker (the sweep hands again a chunk lost with a machine)."""

    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="chunks")
    seq = models.PositiveIntegerField()
    wallets = models.JSONField()
    done = models.BooleanField(default=False)
    # Its wallets that the live re-check cleared, gathered into the run at the seal.
    cleared = models.JSONField(default=list)
    worker = models.CharField(max_length=255, blank=True)  # hostname:pid (revassure.leases.holder)
    lease_until = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="one_chunk_per_seq")]

    def __str__(self) -> str:
        return f"run {self.run_id} chunk {self.seq}"
