import re

from django.conf import settings
from django.db import models

from revassure.formatting import signed
from revassure.logs import correlation_id_or_blank
from revassure.sealing.models import AppendOnly, FinishedRecordError, SealedRun


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
    def duration(self):
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

    def save(self, *args, **kwargs):
        if ReconciliationRun.objects.filter(pk=self.run_id, status__in=FINISHED).exists():
            raise FinishedRecordError(f"run {self.run_id} is finished; its violations cannot change")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
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


# -- balance change requests: heals and manual adjustments ---------------------


class InvalidTransition(Exception):
    pass


class RequestKind(models.TextChoices):
    HEAL = "heal"
    ADJUSTMENT = "adjustment", "manual adjustment"
    # A ledger entry that supersedes a malformed one (reconciliation.corrections).
    CORRECTION = "correction"


# The kinds that answer a violation (their `violation` is set): one open per wallet.
REPAIR_KINDS = (RequestKind.HEAL, RequestKind.CORRECTION)


class HealStrategy(models.TextChoices):
    REBALANCE = "rebalance", "rebalance (set points to the ledger sum)"
    POST_ADJUSTMENT = "post_adjustment", "post adjustment (append a reconciliation entry)"


class RequestState(models.TextChoices):
    PROPOSED = "proposed"
    APPROVED = "approved"
    APPLIED = "applied"
    REJECTED = "rejected"
    STALE = "stale"
    FAILED = "failed"
    EXPIRED = "expired"


OPEN_STATES = (RequestState.PROPOSED, RequestState.APPROVED)
# The states in which a request counts for what it is about: awaiting a
# decision or its worker, or done.
STANDING_STATES = (*OPEN_STATES, RequestState.APPLIED)

# The one state machine of heals and adjustments: from -> allowed next states.
TRANSITIONS: dict[str, set[str]] = {
    RequestState.PROPOSED: {
        RequestState.APPROVED,
        RequestState.REJECTED,
        RequestState.EXPIRED,
        RequestState.STALE,
    },
    RequestState.APPROVED: {RequestState.APPLIED, RequestState.STALE, RequestState.FAILED},
}


class ReasonCode(models.TextChoices):
    GOODWILL = "goodwill", "goodwill gesture"
    SERVICE_RECOVERY = "service_recovery", "service recovery"
    CORRECTION = "correction", "correction of an error"
    FRAUD = "fraud", "fraud or abuse"
    MIGRATION = "migration", "data migration fix"
    SETTLEMENT = "settlement", "settlement statement break"
    OTHER = "other", "other (explain)"


class BalanceRequest(models.Model):
    """A proposed change to one wallet's balance: a heal of a violation, or a
    manual adjustment. Nobody moves a balance alone: the proposer can never
    approve it, and above a threshold two distinct approvers must.

    `expected_points` / `expected_ledger_sum` are the wallet as the proposal saw
    it; each approval records what its approver saw; execution refuses (stale)
    when Firestore no longer matches the last approval.
    """

    kind = models.CharField(max_length=16, choices=RequestKind)
    uid = models.CharField(max_length=256)
    state = models.CharField(max_length=16, choices=RequestState, default=RequestState.PROPOSED)
    violation = models.ForeignKey(
        Violation, null=True, blank=True, on_delete=models.PROTECT, related_name="heal_requests"
    )
    strategy = models.CharField(max_length=16, choices=HealStrategy, blank=True)
    # Signed points the change moves the wallet by (for a rebalance: ledger sum - points).
    amount = models.BigIntegerField()
    reason_code = models.CharField(max_length=32, choices=ReasonCode)
    reason = models.TextField()
    # The business identity (a payment's, refund's or chargeback's ledger entry
    # id) a manual adjustment settles, when it closes a settlement break; blank
    # otherwise. One standing adjustment per identity (the constraint below).
    settles = models.CharField(max_length=200, blank=True, default="")
    # The malformed ledger entry (its id in the wallet's ledger) a correction
    # supersedes; blank otherwise. One standing correction per entry (the
    # constraint below).
    supersedes = models.CharField(max_length=500, blank=True, default="")
    expected_points = models.BigIntegerField()
    expected_ledger_sum = models.BigIntegerField()
    required_approvals = models.PositiveSmallIntegerField(default=1)
    proposed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    # The proposing request's id (each later step's is on its event).
    correlation_id = models.CharField(max_length=128, blank=True, default=correlation_id_or_blank)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    approved_at = models.DateTimeField(null=True, blank=True)
    # Set by the worker that executes it: a second worker finds it taken.
    claimed_at = models.DateTimeField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("propose_balancerequest", "Can propose heals and manual adjustments"),
            ("approve_balancerequest", "Can approve or reject heals and manual adjustments"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["violation"],
                condition=models.Q(state__in=["proposed", "approved"]),
                name="one_open_heal_per_violation",
            ),
            models.UniqueConstraint(
                fields=["settles"],
                condition=models.Q(state__in=["proposed", "approved", "applied"]) & ~models.Q(settles=""),
                name="one_standing_adjustment_per_settled_identity",
            ),
            models.UniqueConstraint(
                fields=["uid", "supersedes"],
                condition=models.Q(state__in=["proposed", "approved", "applied"]) & ~models.Q(supersedes=""),
                name="one_standing_correction_per_entry",
            ),
        ]
        indexes = [models.Index(fields=["state", "created_at"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} for {self.uid} ({signed(self.amount)})"

    def save(self, *args, **kwargs):
        # The state machine holds here too, whatever code saves the row.
        if self.pk:
            stored = type(self).objects.filter(pk=self.pk).values_list("state", flat=True).first()
            if stored is not None and stored != self.state and self.state not in TRANSITIONS.get(stored, ()):
                raise InvalidTransition(f"a {stored} request cannot become {self.state}")
        super().save(*args, **kwargs)

    @property
    def ledger_entry_id(self) -> str:
        """The ledger entry this request appends: derived from the request, so a
        retry can never post it twice (REQUEST_ENTRY reads it back)."""
        return f"revassure-{self.kind}-{self.pk}"

    @property
    def title(self) -> str:
        """ "Heal #12", "Correction #13", "Manual adjustment #14": how pages name it."""
        return f"{self.get_kind_display().capitalize()} #{self.pk}"


# The ledger entry (or auditLog record) a request writes, BalanceRequest.ledger_entry_id: (kind, request id).
REQUEST_ENTRY = re.compile(rf"^revassure-({'|'.join(RequestKind.values)})-(\d+)$")


class RequestApproval(models.Model):
    request = models.ForeignKey(BalanceRequest, on_delete=models.PROTECT, related_name="approvals")
    # Null when a policy approved it (auto-heal), named in `policy`.
    approver = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    policy = models.CharField(max_length=64, blank=True)
    seen_points = models.BigIntegerField()
    seen_ledger_sum = models.BigIntegerField()
    # Why the approver approved (optional; a rejection's reason is required and
    # lives on its RequestEvent). Also written into the trail's event.
    reason = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["request", "approver"], name="one_approval_per_person")
        ]

    def __str__(self) -> str:
        return f"approval of #{self.request_id} by {self.approver or self.policy}"


class RequestEvent(AppendOnly):
    """Append-only audit trail of a request: every transition, who, when, why."""

    APPEND_ONLY = "the audit trail is append-only"

    request = models.ForeignKey(BalanceRequest, on_delete=models.PROTECT, related_name="events")
    from_state = models.CharField(max_length=16, blank=True)
    to_state = models.CharField(max_length=16)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Who acted when it was not a person: "policy:auto-heal", "system:expiry", "worker".
    actor_label = models.CharField(max_length=64, blank=True)
    reason = models.TextField(blank=True)
    correlation_id = models.CharField(max_length=128, blank=True, default=correlation_id_or_blank)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"#{self.request_id}: {self.from_state or '-'} -> {self.to_state}"


# -- breaks: one wallet's drift tracked from its first sighting to its end --------


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
