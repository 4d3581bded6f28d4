from django.db import models


class Job(models.Model):
    """A job asked for through the API (Cloud Scheduler): one per idempotency key,
    so a retried call returns the same job instead of starting a second run."""

    class Kind(models.TextChoices):
        RECONCILE = "reconcile"
        BACKFILL = "backfill"
        SETTLEMENT = "settlement"

    kind = models.CharField(max_length=32, choices=Kind)
    idempotency_key = models.CharField(max_length=200)
    caller = models.EmailField()
    created_at = models.DateTimeField(auto_now_add=True)
    run = models.ForeignKey(
        "reconciliation.ReconciliationRun", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    migration = models.ForeignKey(
        "backfill.DataMigration", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    settlement_run = models.ForeignKey(
        "settlement.SettlementRun", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["kind", "idempotency_key"], name="one_job_per_key")]

    def __str__(self) -> str:
        return f"{self.kind} job {self.pk} ({self.idempotency_key})"
