"""Breaks: one wallet's drift tracked from its first sighting to its end, with its sightings, its
append-only notes and the runs the breaks have taken in."""

from django.conf import settings
from django.db import models

from reconciliation.models.requests import BalanceRequest
from reconciliation.models.runs import ReconciliationRun, Violation, ViolationKind
from revassure.sealing.models import AppendOnly


class BreakStatus(models.TextChoices):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    CLOSED = "closed"


OPEN_BREAK_STATES = (BreakStatus.OPEN, BreakStatus.ACKNOWLEDGED)

# The one state machine of breaks: from -> allowed next states. Acknowledged
# goes back to open when the break is assigned to someone else (who has not
# acknowledged it yet); closed goes back to open only for an accepted break
# whose delta changes.
BREAK_TRANSITIONS: dict[str, set[str]] = {
    BreakStatus.OPEN: {BreakStatus.ACKNOWLEDGED, BreakStatus.CLOSED},
    BreakStatus.ACKNOWLEDGED: {BreakStatus.OPEN, BreakStatus.CLOSED},
    BreakStatus.CLOSED: {BreakStatus.OPEN},
}


class BreakResolution(models.TextChoices):
    HEALED = "healed", "healed by a heal or correction of ours"
    CLEARED = "cleared", "cleared without us"
    ACCEPTED = "accepted", "accepted by an approver"


class BreakSeverity(models.TextChoices):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class ProbableCause(models.TextChoices):
    MISSED_ENTRIES = "missed_entries", "wallet missed its latest entries"
    EXTRA_IN_WALLET = "extra_in_wallet", "entry missing from the ledger or counted twice in the wallet"
    WRONG_SIGN = "wrong_sign", "sign of an entry applied the wrong way"
    DUPLICATED_ENTRY = "duplicated_entry", "the same event written twice to the ledger"
    MALFORMED_AMOUNT = "malformed_amount", "malformed amount"
    OUR_ENTRY = "our_entry", "an entry written by revassure"
    UNEXPLAINED = "unexplained"


class Break(models.Model):
    """One episode of one wallet being wrong: opened by the first completed run
    that reports a violation for the uid, seen again by each later run that still
    reports it (its sightings), closed by the first later run that checks the uid
    and finds it clean: `healed` (a heal or a correction of ours was applied
    after the last sighting), `cleared` (clean without us) or `accepted`
    by an approver.

    An accepted break stays `watching` its uid: a run that reports the same delta
    adds a sighting and leaves it closed; a different delta reopens it; a clean
    check ends the watch. At most one break watches a uid (constraint). The
    current values (kind, points, ledger sum, delta) are the last sighting's.
    """

    uid = models.CharField(max_length=256)
    status = models.CharField(max_length=16, choices=BreakStatus, default=BreakStatus.OPEN)
    resolution = models.CharField(max_length=16, choices=BreakResolution, blank=True)
    kind = models.CharField(max_length=16, choices=ViolationKind)
    wallet_points = models.BigIntegerField(null=True, blank=True)
    ledger_sum = models.BigIntegerField()
    delta = models.BigIntegerField(null=True, blank=True)
    # |delta| (0 when the delta is unknown): ordering and severity.
    size = models.BigIntegerField(default=0)
    entries = models.PositiveIntegerField(default=0)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    first_run = models.ForeignKey(ReconciliationRun, on_delete=models.PROTECT, related_name="+")
    last_run = models.ForeignKey(ReconciliationRun, on_delete=models.PROTECT, related_name="+")
    sightings_count = models.PositiveIntegerField(default=1)
    watching = models.BooleanField(default=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Computed once, when the break opens (blank until then): see reconciliation/breaks.py.
    cause = models.CharField(max_length=32, choices=ProbableCause, blank=True)
    cause_text = models.TextField(blank=True)
    cause_evidence = models.JSONField(default=dict, blank=True)
    # The worker computing the cause (a token of its task) and its lease
    # (revassure/leases.py): a blank cause is computed by one worker at a time.
    cause_claim = models.CharField(max_length=64, blank=True)
    cause_lease_until = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by_run = models.ForeignKey(
        ReconciliationRun, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    heal_request = models.ForeignKey(
        BalanceRequest, null=True, blank=True, on_delete=models.PROTECT, related_name="healed_breaks"
    )
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_delta = models.BigIntegerField(null=True, blank=True)
    accepted_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        permissions = [
            ("work_break", "Can assign, take, acknowledge and note breaks, and propose their heals"),
            ("accept_break", "Can accept a break's difference with a reason (a write-off)"),
            ("export_break", "Can export breaks"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["uid"], condition=models.Q(watching=True), name="one_watching_break_per_wallet"
            )
        ]
        indexes = [models.Index(fields=["uid"]), models.Index(fields=["status", "first_seen"])]

    def __str__(self) -> str:
        return f"Break {self.pk} of {self.uid} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_BREAK_STATES


class BreakSighting(models.Model):
    """One run's report of a break: its violation holds the points, ledger sum and delta."""

    brk = models.ForeignKey(Break, on_delete=models.PROTECT, related_name="sightings")
    run = models.ForeignKey(ReconciliationRun, on_delete=models.PROTECT, related_name="+")
    violation = models.OneToOneField(Violation, on_delete=models.PROTECT, related_name="sighting")
    seen_at = models.DateTimeField()

    class Meta:
        ordering = ["seen_at", "id"]
        constraints = [models.UniqueConstraint(fields=["brk", "run"], name="one_sighting_per_run")]

    def __str__(self) -> str:
        return f"break {self.brk_id} seen by run {self.run_id}"


class BreakAction(models.TextChoices):
    NOTE = "note"
    ASSIGN = "assign", "assigned"
    TAKE = "take", "taken"
    ACKNOWLEDGE = "acknowledge", "acknowledged"
    ACCEPT = "accept", "accepted"
    PROPOSE_HEAL = "propose_heal", "heal proposed"
    PROPOSE_CORRECTION = "correction", "correction proposed"
    REOPEN = "reopen", "reopened"
    CLOSE = "close", "closed"


class BreakNote(AppendOnly):
    """Append-only story of a break: people's notes, and every action with who
    and when (no author: a run did it)."""

    APPEND_ONLY = "a break's notes are append-only"

    brk = models.ForeignKey(Break, on_delete=models.PROTECT, related_name="notes")
    action = models.CharField(max_length=16, choices=BreakAction, default=BreakAction.NOTE)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"break {self.brk_id}: {self.action}"


class TrackedRun(models.Model):
    """A completed run whose findings the breaks have taken in (once: the primary key)."""

    run = models.OneToOneField(
        ReconciliationRun, primary_key=True, on_delete=models.PROTECT, related_name="break_tracking"
    )
    tracked_at = models.DateTimeField(auto_now_add=True)
    opened = models.PositiveIntegerField(default=0)
    seen = models.PositiveIntegerField(default=0)
    closed = models.PositiveIntegerField(default=0)
    reopened = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"breaks of run {self.run_id}"
