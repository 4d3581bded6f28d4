"""The real-time watcher's state (one row per watched project) and the wallets waiting for its check."""

from django.db import models


class WatcherState(models.Model):
    """Where the real-time watcher (`watch_ledger`) is: one row per watched
    Firestore project. `resume_at` is the read time up to which every write has
    been checked (a restart re-checks the wallets written after it);
    `heartbeat_at` says it is alive, `last_event_at` when a write last arrived."""

    project = models.CharField(max_length=128, primary_key=True)
    resume_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)
    connected = models.BooleanField(default=False)
    pending = models.PositiveIntegerField(default=0)  # wallets waiting for their check
    oldest_pending_at = models.DateTimeField(null=True, blank=True)  # commit time of the oldest of them
    disconnected_at = models.DateTimeField(null=True, blank=True)  # since when not listening
    started_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"watcher of {self.project}"


class PendingCheck(models.Model):
    """A wallet written (an Eventarc event said so) waiting for the watcher's
    check, due a debounce after its first write (reconciliation.watcher)."""

    uid = models.CharField(max_length=256, primary_key=True)
    first_write = models.DateTimeField()
    due_at = models.DateTimeField()
    # The check that took it (a token of the task) and its lease (revassure/leases.py):
    # a check whose worker died is taken again once the lease lapses.
    claim = models.CharField(max_length=64, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"check of {self.uid} due {self.due_at}"
