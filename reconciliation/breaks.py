"""Breaks: one wallet's drift followed from the first run that reports it to
the run that finds the wallet clean, with its age, owner, notes, probable cause
and how it ended. This module tracks them; break_age says how old and how
severe they are; break_causes computes probable causes, break_actions holds what
people do (assign, take, acknowledge, note, accept, propose a heal).

    track_run(run)     after each completed run (services, right after the
                       seal): opens, sees, closes and reopens breaks from the
                       run's violations in one transaction (a handful of
                       queries whatever the number of violations), then has
                       a task (tasks.fill_break_causes) compute the probable
                       cause of the breaks it opened, off the run's path.

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
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django_q.tasks import async_task

from reconciliation import break_age, break_causes
from reconciliation.models import (
    OPEN_BREAK_STATES,
    REPAIR_KINDS,
    BalanceRequest,
    Break,
    BreakAction,
    BreakNote,
    BreakResolution,
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
        "age_days": break_age.age_days(brk, now),
        "sightings": brk.sightings_count,
        "owner": brk.owner.get_username() if brk.owner else None,
        "cause": break_causes.as_json(brk.cause, brk.cause_text, brk.cause_evidence or {}),
        "resolution": brk.resolution or None,
        "healed_by": brk.heal_request_id,
        "corrections": [correction_json(r) for r in corrections],
    }
