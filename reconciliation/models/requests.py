"""Balance change requests (heals, manual adjustments, corrections): the request, its approvals and its
append-only events, with the one state machine they follow."""

import re
from typing import Any

from django.conf import settings
from django.db import models

from reconciliation.models.runs import Violation
from revassure.formatting import signed
from revassure.logs import correlation_id_or_blank
from revassure.sealing.models import AppendOnly


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

    def save(self, *args: Any, **kwargs: Any) -> None:
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
