"""Breaks: one wallet's drift followed from the first run that reports it to
the run that finds the wallet clean, with its age, owner, notes, probable cause
and how it ended. This module tracks them and says how old and how severe
they are; break_causes computes probable causes, break_actions holds what
people do (assign, take, acknowledge, note, accept, propose a heal).

    track_run(run)     after each completed run (services, right after the
                       seal): opens, sees, closes and reopens breaks from the
                       run's violations in one transaction (a handful of
                       queries whatever the number of violations), then has
                       a task (tasks.fill_break_causes) compute the probable
                       cause of the breaks it opened, off the run's path.
    open_by_bucket()   open breaks per age bucket: for the dashboard, the
                       `revassure_breaks_open{bucket}` metric, and with
                       oldest_open_days() an alert on old breaks, once the
                       observability work exists.

A heal (or a correction of a malformed entry) closes its break as `healed`
at the next run that finds the wallet clean, not when it is applied: the
report, not the request, says the wallet is right again (a heal applied to a
wallet that drifted once more before the next run leaves the break open).
Heals are found through their violation, one of the break's sightings, so a
heal proposed from the violation pages counts as much as one proposed from a
break; reconciliation.changes knows nothing of breaks. A break seen again
with another kind (malformed, then drift once a correction took the
malformed entry out) has its probable cause computed again.

A run "checks" a uid when it is a full run or the uid is in its scope. A full
run streams the wallets, so a break whose wallet document was deleted is
closed (cleared) by it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, Count, F, IntegerField, Q, QuerySet, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone
from django_q.tasks import async_task

from reconciliation import break_causes
from reconciliation.models import (
    OPEN_BREAK_STATES,
    REPAIR_KINDS,
    BalanceRequest,
    Break,
    BreakAction,
    BreakNote,
    BreakResolution,
    BreakSeverity,
    BreakSighting,
    BreakStatus,
    ReconciliationRun,
    RequestKind,
    RequestState,
    RunStatus,
    TrackedRun,
    Violation,
)
from revassure.formatting import signed, when
from revassure.logs import on_commit

log = logging.getLogger(__name__)

BATCH = 500  # rows per bulk statement
CATCH_UP_RUNS = 10  # completed runs a tracker takes in that an earlier tracker missed
CAUSES_TASK = "reconciliation.tasks.fill_break_causes"


# -- age and severity ------------------------------------------------------------


def bucket_names() -> list[str]:
    """The age buckets' names from BREAK_AGE_BUCKETS: "0-1", "2-7", "8-30", "over-30"."""
    names, low = [], 0
    for high in settings.BREAK_AGE_BUCKETS:
        names.append(f"{low}-{high}")
        low = high + 1
    return [*names, f"over-{settings.BREAK_AGE_BUCKETS[-1]}"]


def bucket_label(name: str) -> str:
    return name.replace("over-", "over ").replace("-", "–") + " days"


def age_days(brk: Break, now: datetime | None = None) -> int:
    """Whole days from the first sighting to now (to the close, once closed)."""
    end = brk.closed_at or now or timezone.now()
    return max(0, (end - brk.first_seen).days)


def age_bucket(days: int) -> str:
    for high, name in zip(settings.BREAK_AGE_BUCKETS, bucket_names(), strict=False):
        if days <= high:
            return name
    return bucket_names()[-1]


def severity_of(*, size: int, delta_known: bool, days: int) -> str:
    level = 0
    if size >= settings.BREAK_SEVERITY_HIGH_POINTS:
        level = 2
    elif size >= settings.BREAK_SEVERITY_MEDIUM_POINTS or not delta_known:
        level = 1
    if days > settings.BREAK_SEVERITY_ESCALATE_DAYS:
        level += 1
    return [BreakSeverity.LOW, BreakSeverity.MEDIUM, BreakSeverity.HIGH, BreakSeverity.CRITICAL][level]


def severity(brk: Break, now: datetime | None = None) -> str:
    return severity_of(size=brk.size, delta_known=brk.delta is not None, days=age_days(brk, now))


def annotate(queryset: QuerySet, now: datetime | None = None) -> QuerySet:
    """Breaks with `age_bucket`, `severity`, `severity_rank` (0 low to 3
    critical, so lists sort by severity rather than by its name) and `open_rank` (0 open, 1 closed)
    computed by the database, so lists filter and sort on them: the same rules
    as age_bucket() and severity(), written as SQL."""
    now = now or timezone.now()
    end = Coalesce(F("closed_at"), Value(now))

    def older_than(days: int) -> Q:  # age_days > days
        return Q(first_seen__lte=end - timedelta(days=days + 1))

    names = bucket_names()
    bucket = Case(
        *(
            When(~older_than(high), then=Value(name))
            for high, name in zip(settings.BREAK_AGE_BUCKETS, names, strict=False)
        ),
        default=Value(names[-1]),
    )
    high = Q(size__gte=settings.BREAK_SEVERITY_HIGH_POINTS)
    medium = Q(size__gte=settings.BREAK_SEVERITY_MEDIUM_POINTS) | Q(delta__isnull=True)
    old = older_than(settings.BREAK_SEVERITY_ESCALATE_DAYS)
    level = Case(
        When(high & old, then=Value(BreakSeverity.CRITICAL)),
        When(high, then=Value(BreakSeverity.HIGH)),
        When(medium & old, then=Value(BreakSeverity.HIGH)),
        When(medium, then=Value(BreakSeverity.MEDIUM)),
        When(old, then=Value(BreakSeverity.MEDIUM)),
        default=Value(BreakSeverity.LOW),
    )
    rank = Case(
        When(status__in=OPEN_BREAK_STATES, then=Value(0)), default=Value(1), output_field=IntegerField()
    )
    severity_rank = Case(
        *(When(severity=Value(s), then=Value(n)) for n, s in enumerate(BreakSeverity)),
        output_field=IntegerField(),
    )
    return queryset.annotate(age_bucket=bucket, severity=level, open_rank=rank).annotate(
        severity_rank=severity_rank
    )


def open_by_bucket(now: datetime | None = None) -> dict[str, int]:
    """{bucket: open breaks of that age}, every bucket present (zeros too), in
    bucket order: what `revassure_breaks_open{bucket}` and the dashboard show.
    One query."""
    counts = dict.fromkeys(bucket_names(), 0)
    rows = (
        annotate(Break.objects.filter(status__in=OPEN_BREAK_STATES), now)
        .values("age_bucket")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in rows:
        counts[row["age_bucket"]] = row["n"]
    return counts


def oldest_open_days(now: datetime | None = None) -> int | None:
    """Age in days of the oldest open break (None when none is open): for an
    alert rule "a break older than N days"."""
    oldest = Break.objects.filter(status__in=OPEN_BREAK_STATES).order_by("first_seen").first()
    return None if oldest is None else age_days(oldest, now)


# -- tracking runs ---------------------------------------------------------------


@dataclass(frozen=True)
class Sighted:
    pk: int
    uid: str
    kind: str
    wallet_points: int | None
    ledger_sum: int
    delta: int | None
    entries: int


_CURRENT = ["kind", "wallet_points", "ledger_sum", "delta", "size", "entries"]
_SEEN = ["last_seen", "last_run", "sightings_count", *_CURRENT, "cause", "cause_text", "cause_evidence"]
_ENDED = ["status", "resolution", "closed_at", "closed_by_run", "heal_request", "watching"]
_REOPENED = [
    "status",
    "resolution",
    "closed_at",
    "accepted_by",
    "accepted_at",
    "accepted_delta",
    "accepted_reason",
]


def track_run(run: ReconciliationRun) -> TrackedRun | None:
    """Take a completed run's findings into the breaks, then hand the probable
    causes of the breaks without one (those it opened) to a task. Never raises:
    the run is sealed whatever happens here, and the next run takes in what
    this one missed (catch-up)."""
    if not settings.BREAK_TRACKING:
        return None
    tracked = None
    try:
        for pending in _runs_to_track(run):
            tracked = _track(pending) or tracked
        if Break.objects.filter(cause="", status__in=OPEN_BREAK_STATES).exists():
            # Reading the new breaks' ledgers again costs about what the run's
            # own re-check did: a worker does it after the run, not in it.
            on_commit(lambda: async_task(CAUSES_TASK, task_name=f"break-causes-{run.pk}"))
    except Exception:
        log.exception("break tracking failed", extra={"run_id": run.pk})
        return None
    return tracked


def _runs_to_track(run: ReconciliationRun) -> list[ReconciliationRun]:
    """This run, after any completed run since the last tracked one that was not
    taken in (a tracker that died), oldest first, at most CATCH_UP_RUNS of them.
    A run older than the last tracked one is not taken in: newer evidence is."""
    last = TrackedRun.objects.select_related("run").order_by("-run__chain_seq").first()
    if last is None:
        return [run]
    assert run.chain_seq is not None and last.run.chain_seq is not None  # both sealed: in the chain
    if run.chain_seq <= last.run.chain_seq:
        if run.chain_seq < last.run.chain_seq:
            log.warning("run older than the last tracked run: breaks not updated", extra={"run_id": run.pk})
        return []
    missed = ReconciliationRun.objects.filter(
        status=RunStatus.COMPLETED,
        chain_seq__gt=last.run.chain_seq,
        chain_seq__lt=run.chain_seq,
        break_tracking__isnull=True,
    ).order_by("-chain_seq")[:CATCH_UP_RUNS]
    return [*reversed(missed), run]


def _track(run: ReconciliationRun) -> TrackedRun | None:
    """One run's findings, in one transaction; None when it was tracked already.

    Claiming the run (its TrackedRun row) is the transaction's first write, so
    two trackers serialise on it, and each reads the breaks as the one before
    left them."""
    now = timezone.now()
    seen_at = run.started_at or run.finished_at or now
    with transaction.atomic():
        try:
            with transaction.atomic():
                tracked = TrackedRun.objects.create(run=run)
        except IntegrityError:
            return None
        found = [
            Sighted(*row)
            for row in Violation.objects.filter(run=run).values_list(
                "pk", "uid", "kind", "wallet_points", "ledger_sum", "delta", "entries"
            )
        ]
        watching = Break.objects.filter(watching=True)
        scope = set(run.scope_uids) if run.scope_uids else None
        if scope is not None and len(scope) <= BATCH:
            watching = watching.filter(uid__in=scope)
        watched = {b.uid: b for b in watching}

        opened, sightings, notes = [], [], []
        # Seen again: unchanged open breaks take one UPDATE; the others a bulk update.
        same, moved, reopened = [], [], []
        for v in found:
            brk = watched.pop(v.uid, None)
            if brk is None:
                opened.append((_opened(v, run, seen_at), v.pk))
                continue
            sightings.append(BreakSighting(brk=brk, run=run, violation_id=v.pk, seen_at=seen_at))
            if not brk.is_open and brk.accepted_delta != v.delta:
                notes.append(_reopen(brk, v, run))
                reopened.append(brk)
            if brk.is_open and _current(brk) == _current_of(v):
                same.append(brk.pk)
            else:
                _see(brk, v, run, seen_at)
                moved.append(brk)
        tracked.seen, tracked.reopened = len(sightings), len(reopened)

        checked = [b for b in watched.values() if scope is None or b.uid in scope]
        ended = _end(checked, run, now, notes)
        tracked.closed = sum(1 for b in ended if b.resolution != BreakResolution.ACCEPTED)

        Break.objects.bulk_create([b for b, _ in opened], batch_size=BATCH)
        sightings += [BreakSighting(brk=b, run=run, violation_id=pk, seen_at=seen_at) for b, pk in opened]
        tracked.opened = len(opened)
        for start in range(0, len(same), BATCH):
            Break.objects.filter(pk__in=same[start : start + BATCH]).update(
                last_seen=seen_at, last_run=run, sightings_count=F("sightings_count") + 1
            )
        save_each(moved, _SEEN)
        save_each(reopened, _REOPENED)
        save_each(ended, _ENDED)
        BreakSighting.objects.bulk_create(sightings, batch_size=BATCH)
        BreakNote.objects.bulk_create(notes, batch_size=BATCH)
        tracked.save(update_fields=["opened", "seen", "closed", "reopened"])
    log.info(
        "breaks tracked",
        extra={"run_id": run.pk, "opened": tracked.opened, "seen": tracked.seen, "closed": tracked.closed},
    )
    return tracked


def save_each(rows: list[Break], fields: list[str]) -> None:
    """One UPDATE per break: bulk_update's CASE per field and row costs far more
    Python than the statements it saves (some 2 s for 500 breaks)."""
    for brk in rows:
        Break.objects.filter(pk=brk.pk).update(**{name: getattr(brk, name) for name in fields})


def _current(brk: Break) -> tuple:
    return (brk.kind, brk.wallet_points, brk.ledger_sum, brk.delta, brk.entries)


def _current_of(v: Sighted) -> tuple:
    return (v.kind, v.wallet_points, v.ledger_sum, v.delta, v.entries)


def _opened(v: Sighted, run: ReconciliationRun, seen_at: datetime) -> Break:
    return Break(
        uid=v.uid,
        kind=v.kind,
        wallet_points=v.wallet_points,
        ledger_sum=v.ledger_sum,
        delta=v.delta,
        size=abs(v.delta or 0),
        entries=v.entries,
        first_seen=seen_at,
        last_seen=seen_at,
        first_run=run,
        last_run=run,
    )


def _see(brk: Break, v: Sighted, run: ReconciliationRun, seen_at: datetime) -> None:
    if brk.is_open and brk.kind != v.kind:
        # What the ledger said no longer holds (a corrected entry): the cause task reads it again.
        brk.cause, brk.cause_text, brk.cause_evidence = "", "", {}
    brk.kind, brk.wallet_points, brk.ledger_sum, brk.delta, brk.entries = _current_of(v)
    brk.size = abs(v.delta or 0)
    brk.last_seen, brk.last_run = seen_at, run
    brk.sightings_count += 1


def _reopen(brk: Break, v: Sighted, run: ReconciliationRun) -> BreakNote:
    text = (
        f"Reopened by run {run.pk}: the delta is now {signed(v.delta)}, not the "
        f"{signed(brk.accepted_delta)} {brk.accepted_by} accepted at {when(brk.accepted_at)} "
        f"({brk.accepted_reason})"
    )
    brk.status, brk.resolution, brk.closed_at = BreakStatus.OPEN, "", None
    brk.accepted_by, brk.accepted_at, brk.accepted_delta, brk.accepted_reason = None, None, None, ""
    return BreakNote(brk=brk, action=BreakAction.REOPEN, text=text)


def _end(checked: list[Break], run: ReconciliationRun, now: datetime, notes: list) -> list[Break]:
    """Close the open breaks the run found clean, healed or cleared; end the
    watch of accepted ones."""
    healing = _applied_heals([b.pk for b in checked if b.is_open])
    for brk in checked:
        brk.watching = False
        if not brk.is_open:
            notes.append(
                BreakNote(
                    brk=brk,
                    action=BreakAction.CLOSE,
                    text=f"Run {run.pk} found the wallet clean: the accepted difference is gone.",
                )
            )
            continue
        heal = next(
            (
                h
                for h in healing.get(brk.pk, ())
                if h.applied_at is not None and h.applied_at >= brk.last_seen
            ),
            None,
        )
        brk.status, brk.closed_at, brk.closed_by_run = BreakStatus.CLOSED, now, run
        brk.resolution = BreakResolution.HEALED if heal else BreakResolution.CLEARED
        brk.heal_request = heal
        how = f"healed by {heal.title.lower()}" if heal else "cleared, clean without a heal of ours"
        notes.append(BreakNote(brk=brk, action=BreakAction.CLOSE, text=f"Closed by run {run.pk}: {how}."))
    return checked


def _applied_heals(break_ids: list[int]) -> dict[int, list[BalanceRequest]]:
    """{break pk: heals and corrections applied to its sightings' violations, latest first}."""
    found: dict[int, list[BalanceRequest]] = {}
    if not break_ids:
        return found
    heals = BalanceRequest.objects.filter(
        kind__in=REPAIR_KINDS, state=RequestState.APPLIED, violation__sighting__brk__in=break_ids
    ).annotate(break_id=F("violation__sighting__brk_id"))
    for heal in heals.order_by("-applied_at", "-id"):
        found.setdefault(heal.break_id, []).append(heal)
    return found


# -- how breaks are shown outside (manage.py breaks --json) --------------------------


def corrections_of(break_ids: list[int]) -> dict[int, list[BalanceRequest]]:
    """{break pk: the corrections proposed for its sightings, oldest first}, in one query."""
    found: dict[int, list[BalanceRequest]] = {}
    requests = BalanceRequest.objects.filter(
        kind=RequestKind.CORRECTION, violation__sighting__brk__in=break_ids
    ).annotate(break_id=F("violation__sighting__brk_id"))
    for request in requests.order_by("created_at", "id"):
        found.setdefault(request.break_id, []).append(request)
    return found


def correction_json(request: BalanceRequest) -> dict[str, Any]:
    """A correction as `breaks --json` links it: the malformed entry it supersedes
    and the entry it appends (once applied)."""
    return {
        "request": request.pk,
        "state": request.state,
        "supersedes": request.supersedes,
        "entry": request.ledger_entry_id,
        "amount": request.amount,
        "applied_at": request.applied_at.isoformat() if request.applied_at else None,
    }


def summary(
    brk: Break, now: datetime | None = None, corrections: list[BalanceRequest] | None = None
) -> dict[str, Any]:
    """A break as `breaks --json` gives it; `corrections` are its corrections
    (corrections_of), each linking the malformed entry and its correction."""
    if corrections is None:
        corrections = corrections_of([brk.pk]).get(brk.pk, [])
    return {
        "id": brk.pk,
        "uid": brk.uid,
        "status": brk.status,
        "kind": brk.kind,
        "delta": brk.delta,
        "first_seen": brk.first_seen.isoformat(),
        "last_seen": brk.last_seen.isoformat(),
        "age_days": age_days(brk, now),
        "sightings": brk.sightings_count,
        "owner": brk.owner.get_username() if brk.owner else None,
        "cause": break_causes.as_json(brk.cause, brk.cause_text, brk.cause_evidence or {}),
        "resolution": brk.resolution or None,
        "healed_by": brk.heal_request_id,
        "corrections": [correction_json(r) for r in corrections],
    }
