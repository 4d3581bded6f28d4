""" "Waiting for me": every decision or follow-up that waits for one person, across
the apps, each with what it is, since when it waits and where to act on it.

The inbox is a list of providers, one function per kind of item (the kinds are
revassure.waiting.WaitingKind). Each asks its app's actions what this user may
do (reconciliation.change_queries.awaiting, cutover.services.awaiting_acceptance,
settlement.actions.awaiting, reconciliation.break_actions.assigned_to) rather
than restating their rules; one more kind is one more `@provider` function.

The page, the dashboard tile and the header count all read `sections(user)`;
`notify` emails the people a newly waiting item is for (once each), from the
announcement's outbox row (`tell`; revassure/outbox.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, User
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.db.models import Count, Min
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.timesince import timesince

from backfill import plan_approval
from cutover import services as cutover
from observability import channels
from observability.models import Alert, AlertState, InboxNotice, RuleName
from reconciliation import break_actions, change_queries
from reconciliation.models import ReconciliationRun
from revassure import outbox
from revassure.formatting import points, signed, when
from revassure.models import WaitingAnnouncement
from revassure.refusals import may
from revassure.waiting import WaitingKind
from settlement import actions as settlement
from settlement.models import Outcome

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    kind: WaitingKind
    key: str  # unique within its kind: the object's id (or run:outcome for settlement rows)
    what: str
    since: datetime
    url: str
    action: str  # the link's words: what to do there
    detail: str = ""

    def waited(self, now: datetime) -> str:
        if (now - self.since).total_seconds() < 60:
            return "less than a minute"  # timesince would say "0 minutes"
        return timesince(self.since, now, depth=2)


# What a provider is: (user, now) -> the items waiting for that user.
ItemsOf = Callable[[User, datetime], Iterable[Item]]


@dataclass(frozen=True)
class Provider:
    kind: WaitingKind
    heading: str
    items: ItemsOf


@dataclass
class Section:
    kind: WaitingKind
    heading: str
    items: list[Item] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return f"inbox-{self.kind.value.replace('_', '-')}"

    @property
    def count(self) -> int:
        return len(self.items)


PROVIDERS: list[Provider] = []


def provider(kind: WaitingKind, heading: str) -> Callable[[ItemsOf], ItemsOf]:
    """Register a function (user, now) -> items as the inbox's provider of `kind`."""

    def register(func: ItemsOf) -> ItemsOf:
        PROVIDERS.append(Provider(kind, heading, func))
        return func

    return register


def may_use(user: User | AnonymousUser) -> bool:
    """Someone with a role (any permission at all) has an inbox; a staff account
    in no role has nothing that could wait for it."""
    return bool(user.is_active and user.is_staff and (user.is_superuser or user.get_all_permissions()))


def sections(user: User, now: datetime | None = None) -> list[Section]:
    """Every provider's items for this user, oldest first within each kind."""
    if not may_use(user):
        return []
    now = now or timezone.now()
    return [
        Section(p.kind, p.heading, sorted(p.items(user, now), key=lambda item: (item.since, item.key)))
        for p in PROVIDERS
    ]


def count(user: User, now: datetime | None = None) -> int:
    return sum(section.count for section in sections(user, now))


# -- the providers ---------------------------------------------------------------------


@provider(WaitingKind.BALANCE_REQUEST, "Balance requests to decide")
def balance_requests(user: User, now: datetime) -> Iterable[Item]:
    for request in change_queries.awaiting(user).select_related("proposed_by").order_by("created_at", "pk"):
        approvals = (
            f" (needs {request.required_approvals} approvers)" if request.required_approvals > 1 else ""
        )
        yield Item(
            kind=WaitingKind.BALANCE_REQUEST,
            key=str(request.pk),
            what=f"{request.get_kind_display().capitalize()} #{request.pk} of wallet {request.uid}: "
            f"{signed(request.amount)} points{approvals}",
            detail=f"Proposed by {request.proposed_by}: {request.reason}",
            since=request.created_at,
            url=reverse("admin:reconciliation_balancerequest_decide", args=[request.pk]),
            action="Decide",
        )


@provider(WaitingKind.CUTOVER_ACCEPTANCE, "Cutover reconciliations to accept")
def cutover_acceptances(user: User, now: datetime) -> Iterable[Item]:
    for step in cutover.awaiting_acceptance(user):
        run_id = step.evidence.get("run_id")
        run = ReconciliationRun.objects.filter(pk=run_id).only("finished_at").first() if run_id else None
        yield Item(
            kind=WaitingKind.CUTOVER_ACCEPTANCE,
            key=str(step.pk),
            what=f"{step.cutover}: step {step.number}, run {run_id} found "
            f"{step.evidence.get('violations')} violation(s)",
            detail="Accept the violations with a reason to continue, or ask ops to abort the cutover.",
            since=(run.finished_at if run and run.finished_at else step.cutover.started_at),
            url=reverse("admin:cutover_cutover_change", args=[step.cutover_id]),
            action="Accept or not",
        )


@provider(WaitingKind.BACKFILL_PLAN, "Backfill plans to approve")
def backfill_plans(user: User, now: datetime) -> Iterable[Item]:
    for plan in plan_approval.awaiting(user):
        yield Item(
            kind=WaitingKind.BACKFILL_PLAN,
            key=str(plan.pk),
            what=f"Dry run #{plan.pk}: {plan.get_kind_display()} moving "
            f"{points(plan_approval.moved_points(plan))} points, planned by {plan.started_by or 'system'}",
            detail="Read its plan; approve it with a reason, and ops can run it for real, bound to it.",
            since=plan.finished_at or plan.created_at,
            url=reverse("admin:backfill_datamigration_change", args=[plan.pk]),
            action="Read and approve",
        )


@provider(WaitingKind.SETTLEMENT_ROWS, "Settlement rows to explain or follow up")
def settlement_rows(user: User, now: datetime) -> Iterable[Item]:
    groups = (
        settlement.awaiting(user)
        .values("run_id", "outcome")
        .annotate(rows=Count("pk"), since=Min("run__finished_at"))
        .order_by("run_id", "outcome")
    )
    rows_url = reverse("admin:settlement_settlementrow_changelist")
    for group in groups:
        outcome = Outcome(group["outcome"])
        query = urlencode({"run": group["run_id"], "outcome": outcome.value, "follow_up": "none"})
        yield Item(
            kind=WaitingKind.SETTLEMENT_ROWS,
            key=f"{group['run_id']}:{outcome.value}",
            what=f"Settlement run {group['run_id']}: {group['rows']} row(s) {outcome.label}",
            detail="Nothing done about them yet.",
            since=group["since"],
            url=f"{rows_url}?{query}",
            action="Explain or follow up",
        )


@provider(WaitingKind.BREAK, "Breaks assigned to you")
def assigned_breaks(user: User, now: datetime) -> Iterable[Item]:
    for brk in break_actions.assigned_to(user):
        yield Item(
            kind=WaitingKind.BREAK,
            key=str(brk.pk),
            what=f"Break #{brk.pk} of wallet {brk.uid}: {brk.get_kind_display()} {signed(brk.delta)}",
            detail=brk.cause_text,
            since=brk.assigned_at or brk.first_seen,
            url=reverse("admin:reconciliation_break_change", args=[brk.pk]),
            action="Work on it",
        )


# Whose area each alert rule is: the permission of the people who act on its
# cause. Ops (who acknowledge alerts) hold the operational ones; finance the
# money ones. Every rule has one (a test holds that).
AREAS = {
    RuleName.VIOLATIONS_FOUND: "reconciliation.work_break",
    RuleName.DRIFT_ABOVE: "reconciliation.work_break",
    RuleName.LIABILITY_MISMATCH: "reconciliation.work_break",
    RuleName.BREAK_OLDER_THAN: "reconciliation.work_break",
    RuleName.APPROVALS_WAITING: "reconciliation.approve_balancerequest",
    RuleName.RECONCILIATION_STALE: "reconciliation.run_reconciliation",
    RuleName.JOB_FAILED: "reconciliation.run_reconciliation",
    RuleName.WEBHOOKS_UNHEALTHY: "backfill.change_datamigration",
    RuleName.MIGRATION_STALLED: "backfill.change_datamigration",
    RuleName.FREEZE_TOO_LONG: "revassure.manage_freeze",
    RuleName.WATCHER_DOWN: "reconciliation.run_reconciliation",
    RuleName.COULD_NOT_EVALUATE: "observability.acknowledge_alert",
    RuleName.TOO_MANY_ALERTS: "observability.acknowledge_alert",
}


@provider(WaitingKind.ALERT, "Open alerts on your area")
def open_alerts(user: User, now: datetime) -> Iterable[Item]:
    """Open alerts only: acknowledged or silenced ones have someone on them."""
    if not may(user, "observability.view_alert"):
        return
    mine = [name for name, permission in AREAS.items() if may(user, permission)]
    can_acknowledge = may(user, "observability.acknowledge_alert")
    for alert in Alert.objects.filter(state=AlertState.OPEN, rule__name__in=mine).select_related("rule"):
        yield Item(
            kind=WaitingKind.ALERT,
            key=str(alert.pk),
            what=f"{alert.rule.get_name_display().capitalize()}: {alert.summary}",
            detail=f"Open since {when(alert.opened_at or alert.started_at)}.",
            since=alert.opened_at or alert.started_at,
            url=reverse("admin:observability_alert_change", args=[alert.pk]),
            action="Look and acknowledge" if can_acknowledge else "Look",
        )


# -- telling people --------------------------------------------------------------------


def provider_of(kind: str) -> Provider:
    return next(p for p in PROVIDERS if p.kind == kind)


def tell(announcement_id: int, attempt: int) -> int:
    """An announcement's attempt, by the worker that takes it (revassure/outbox.py):
    `notify` for its item, then the announcement is marked sent (or failed, when
    its item's people could not be listed). Returns how many were emailed; 0
    when another worker has it or it is done."""
    if not outbox.claim(WaitingAnnouncement, announcement_id, attempt):
        log.info("waiting notice taken already", extra={"announcement_id": announcement_id})
        return 0
    announcement = WaitingAnnouncement.objects.get(pk=announcement_id)
    try:
        sent = notify(announcement.kind, announcement.object_id, announcement_id=announcement_id)
    except Exception:
        outbox.finish(WaitingAnnouncement, announcement_id, attempt, sent=False)
        raise
    outbox.finish(WaitingAnnouncement, announcement_id, attempt, sent=True)
    return sent


def notify(kind: str, object_id: int, *, announcement_id: int | None = None) -> int:
    """Email each person the item now waits for (its provider lists it for them),
    once per item and person; returns how many were sent. Never raises for a
    mail that cannot be sent: the notice keeps the error."""
    source = provider_of(kind)
    key = str(object_id)
    now = timezone.now()
    sent = 0
    people = get_user_model().objects.filter(is_active=True, is_staff=True).exclude(email="").order_by("pk")
    for person in people:
        item = next((i for i in source.items(person, now) if i.key == key), None)
        if item is None:
            continue
        notice = _claim_notice(kind, object_id, person, announcement_id)
        if notice is None:
            continue  # told already
        error = _send(person, source, item)
        InboxNotice.objects.filter(pk=notice.pk).update(sent=not error, error=error)
        sent += not error
    return sent


def _claim_notice(kind: str, object_id: int, person, announcement_id: int | None) -> InboxNotice | None:
    """The notice to send this person now, claimed (unique per item and person);
    None when they were told already. A notice an earlier attempt of the same
    announcement claimed and neither sent nor failed (its worker died) is
    claimed again: this worker holds the announcement now, no other sends it."""
    try:
        with transaction.atomic():
            return InboxNotice.objects.create(
                kind=kind, object_id=object_id, recipient=person, announcement_id=announcement_id
            )
    except IntegrityError:
        if announcement_id is None:
            return None
        return (
            InboxNotice.objects.filter(
                kind=kind, object_id=object_id, recipient=person, announcement_id=announcement_id
            )
            .filter(sent=False, error="")
            .first()
        )


def _send(person, source: Provider, item: Item) -> str:
    """Send one notice; the error as text, or "" once it is sent."""
    site = settings.SITE_URL.rstrip("/")
    body = "\n".join(
        line
        for line in (
            f"Hello {person.get_short_name() or person.get_username()},",
            "",
            f"{source.heading}: this now waits for you.",
            "",
            item.what,
            item.detail,
            f"Waiting since {when(item.since)}.",
            "",
            f"{item.action}: {site}{item.url}",
            f"Everything waiting for you: {site}{reverse('admin:inbox')}",
        )
        if line is not None
    )
    try:
        EmailMessage(
            f"[revassure] Waiting for you: {item.what}",
            body,
            settings.ALERT_FROM_EMAIL,
            [person.email],
            connection=channels.mail_connection(settings.OUTBOUND_DEADLINE_SECONDS),
        ).send()
    except Exception as exc:  # the backend's errors vary (SMTP, OS, ...): all are a failed notice
        log.warning(
            "waiting notice not sent", extra={"kind": item.kind.value, "key": item.key, "error": str(exc)}
        )
        return f"{type(exc).__name__}: {exc}"
    return ""
