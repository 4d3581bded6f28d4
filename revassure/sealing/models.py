"""What a sealed run and an append-only history are, as Django models.

The database refuses the same changes with triggers (`operations.RefuseChanges`
in each table's migrations): these refusals give the clear error, the triggers
hold whatever path a write takes.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from django.db import models


class FinishedRecordError(Exception):
    """A finished (sealed) record, a row of it, or a row of an append-only history was asked to change."""


class SealedRun(models.Model):
    """A report that is sealed once finished: a checksum over its canonical form
    and its place in its kind's hash chain (chain_seq 1, 2, 3, ..., each with the
    checksum of the one before). From then on the row refuses to change.

    Each subclass gives `status` its choices and default, and names the statuses
    that finish it in FINISHED.
    """

    FINISHED: ClassVar[tuple[str, ...]] = ()
    objects: ClassVar[models.Manager[Self]]  # each concrete subclass's own default manager

    status = models.CharField(max_length=16)
    finished_at = models.DateTimeField(null=True, blank=True)
    checksum = models.CharField(max_length=64, blank=True)
    previous_checksum = models.CharField(max_length=64, blank=True)
    # Position in the kind's hash chain (unique, so two runs sealing at once
    # cannot both claim the same predecessor).
    chain_seq = models.PositiveIntegerField(null=True, blank=True, unique=True)

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk and type(self).objects.filter(pk=self.pk, status__in=self.FINISHED).exists():
            raise FinishedRecordError(f"{self.sealed_name()} is finished and cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        if self.is_finished:
            raise FinishedRecordError(f"{self.sealed_name()} is finished and cannot be deleted")
        return super().delete(*args, **kwargs)

    def sealed_name(self) -> str:
        """How messages name this record ("run 4", "settlement run 4")."""
        return f"run {self.pk}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class AppendOnly(models.Model):
    """A history row: written once, never changed or deleted. APPEND_ONLY is the
    refusal's message ("the audit trail is append-only")."""

    APPEND_ONLY: ClassVar[str] = "this history is append-only"

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk:
            raise FinishedRecordError(self.APPEND_ONLY)
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise FinishedRecordError(self.APPEND_ONLY)
