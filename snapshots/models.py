from django.conf import settings
from django.db import models


class SnapshotStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


# Where each status may go; services.transition is the one place that moves a
# snapshot, with a conditional update, so two workers never both take one.
# A failed snapshot may run again: it picks up after its last finished file.
TRANSITIONS = {
    SnapshotStatus.PENDING: {SnapshotStatus.RUNNING, SnapshotStatus.FAILED},
    SnapshotStatus.RUNNING: {SnapshotStatus.COMPLETED, SnapshotStatus.FAILED, SnapshotStatus.PENDING},
    SnapshotStatus.FAILED: {SnapshotStatus.PENDING, SnapshotStatus.RUNNING},
    SnapshotStatus.COMPLETED: set(),
}


class Verification(models.TextChoices):
    NOT_VERIFIED = "not_verified", "Not verified"
    INTACT = "intact", "Intact"
    CORRUPT = "corrupt", "Corrupt"


class Snapshot(models.Model):
    """A JSON Lines snapshot of the Firestore project into a directory, with its
    manifest and what the last verification of the files found."""

    project = models.CharField(max_length=100)
    path = models.CharField(max_length=500, unique=True)
    status = models.CharField(max_length=16, choices=SnapshotStatus, default=SnapshotStatus.PENDING)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Progress while it runs (wallets_expected from a count taken at the start).
    wallets_expected = models.PositiveIntegerField(null=True, blank=True)
    wallets_done = models.PositiveIntegerField(default=0)
    # From the manifest once completed.
    seconds = models.FloatField(null=True, blank=True)
    wallets = models.PositiveIntegerField(null=True, blank=True)
    entries = models.PositiveIntegerField(null=True, blank=True)
    documents = models.PositiveIntegerField(null=True, blank=True)
    points_total = models.BigIntegerField(null=True, blank=True)
    ledger_total = models.BigIntegerField(null=True, blank=True)
    manifest_sha256 = models.CharField(max_length=64, blank=True)
    manifest = models.JSONField(null=True, blank=True)
    # The last verification: integrity of the files (intact or corrupt, with the
    # errors), and the wallets whose points differ from their ledger (findings
    # about the data, which do not make a snapshot corrupt).
    verification = models.CharField(max_length=16, choices=Verification, default=Verification.NOT_VERIFIED)
    verified_at = models.DateTimeField(null=True, blank=True)
    verification_errors = models.JSONField(default=list, blank=True)
    violations_count = models.PositiveIntegerField(null=True, blank=True)
    violations = models.JSONField(default=list, blank=True)  # the first VIOLATIONS_KEPT
    error = models.TextField(blank=True)
    # Firestore's managed export, started beside the JSON Lines files when
    # SNAPSHOT_BUCKET is set (Google Cloud only).
    managed_export_operation = models.CharField(max_length=300, blank=True)
    managed_export_state = models.CharField(max_length=300, blank=True)
    # The worker taking it (hostname:pid) and its lease (revassure/leases.py),
    # renewed after each file: once lapsed, the minute's sweep hands the
    # snapshot to another worker (services.resume_abandoned).
    worker = models.CharField(max_length=255, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("take_snapshot", "Can take and verify Firestore snapshots")]

    def __str__(self) -> str:
        return f"Snapshot {self.pk} of {self.project}"


class Restore(models.Model):
    """A snapshot loaded into a Firestore project (never production): who, what, where."""

    path = models.CharField(max_length=500)
    project = models.CharField(max_length=100)
    replace = models.BooleanField(default=False)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Refused: nothing was written, and `error` says why.
    refused = models.BooleanField(default=False)
    deleted = models.PositiveIntegerField(default=0)
    written = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"Restore {self.pk} into {self.project}"
