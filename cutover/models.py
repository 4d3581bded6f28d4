"""A cutover runbook: seven steps walked in order, then sealed.

While the cutover is in progress its steps fill in (evidence, who, when, a
note). When it finishes or is aborted its full record is serialised once into
`record` with a SHA-256 `checksum` (cutover/record.py), takes its place in
the chain of cutover records (revassure.sealing), and from then on the model
and the database refuse to save or delete the cutover or any of its steps.
"""

from typing import Any, NoReturn

from django.conf import settings
from django.db import models
from django.db.models import Q

from revassure.sealing.models import FinishedRecordError, SealedRun

# A sealed cutover (or one of its steps) was asked to change: the kernel's one error.
SealedRecordError = FinishedRecordError


class CutoverStatus(models.TextChoices):
    IN_PROGRESS = "in_progress", "In progress"
    FINISHED = "finished", "Finished"
    ABORTED = "aborted", "Aborted"


ENDED = (CutoverStatus.FINISHED, CutoverStatus.ABORTED)


class StepKey(models.TextChoices):
    FREEZE = "freeze", "Freeze manual balance changes"
    SNAPSHOT = "snapshot", "Snapshot"
    RECONCILE = "reconcile", "Reconcile on the target"
    PROMOTE = "promote", "Promote the container"
    SWITCH_WEBHOOKS = "switch_webhooks", "Switch the PayNow webhooks"
    MONITOR = "monitor", "Monitor"
    UNFREEZE = "unfreeze", "Unfreeze"


# The runbook's order: step number n is STEPS[n - 1].
STEPS = list(StepKey)


class StepState(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running in the workers"
    # Only the reconcile step: its run found violations, a finance approver decides.
    NEEDS_ACCEPTANCE = "needs_acceptance", "Needs a finance approver's acceptance"
    DONE = "done", "Done"


class Cutover(SealedRun):
    FINISHED = ENDED

    name = models.CharField(max_length=100)
    target = models.CharField(max_length=100, help_text="the environment cut over to, e.g. production")
    monitor_minutes = models.PositiveIntegerField(default=120)
    status = models.CharField(max_length=16, choices=CutoverStatus, default=CutoverStatus.IN_PROGRESS)
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    started_at = models.DateTimeField(auto_now_add=True)
    abort_reason = models.TextField(blank=True)
    aborted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # What the abort rolled back and what is left to do by hand.
    rollback = models.JSONField(default=dict, blank=True)
    record = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["status"],
                condition=Q(status="in_progress"),
                name="one_cutover_in_progress",
                violation_error_message="another cutover is in progress",
            )
        ]
        permissions = [
            ("run_cutover", "Can start, confirm the steps of and abort a cutover"),
            ("accept_cutover_reconcile", "Can accept a cutover's reconciliation that found violations"),
        ]

    def __str__(self) -> str:
        return f"Cutover {self.name} to {self.target}"

    def sealed_name(self) -> str:
        return f"cutover {self.name}"

    @property
    def is_ended(self) -> bool:
        return self.is_finished


class CutoverStep(models.Model):
    cutover = models.ForeignKey(Cutover, on_delete=models.PROTECT, related_name="steps")
    number = models.PositiveSmallIntegerField()
    key = models.CharField(max_length=16, choices=StepKey)
    state = models.CharField(max_length=16, choices=StepState, default=StepState.PENDING)
    evidence = models.JSONField(default=dict, blank=True)
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    confirmed_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)
    override_reason = models.TextField(blank=True)
    # The reconcile step with violations: the finance approver who accepted, when, why.
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    accepted_at = models.DateTimeField(null=True, blank=True)
    accept_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["cutover", "number"]
        constraints = [
            models.UniqueConstraint(fields=["cutover", "number"], name="one_step_per_number"),
            models.UniqueConstraint(fields=["cutover", "key"], name="one_step_per_key"),
        ]

    def __str__(self) -> str:
        return f"{self.number}. {self.get_key_display()}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if Cutover.objects.filter(pk=self.cutover_id).exclude(checksum="").exists():
            raise SealedRecordError(f"cutover {self.cutover_id} is sealed; its steps cannot change")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise SealedRecordError("a cutover's steps are part of its record and cannot be deleted")
