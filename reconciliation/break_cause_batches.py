"""Filling in the probable causes of open breaks (reconciliation/break_causes.py judges each): batch
by batch under a lease, each wallet and its ledger read once, our latest rebalance of the wallet named
when no entry explains the delta. The task fill_break_causes and the minute's sweep call fill_causes."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from reconciliation.break_causes import Cause, probable_cause, writers_of
from reconciliation.models import (
    OPEN_BREAK_STATES,
    BalanceRequest,
    Break,
    HealStrategy,
    ProbableCause,
    RequestKind,
    RequestState,
)
from revassure import dbclock, leases
from revassure.firestore import FirestoreGateway
from revassure.formatting import signed, when

BATCH = 500  # breaks whose causes are computed together (one batched wallet read)


def fill_causes(*, gateway: FirestoreGateway) -> int:
    """Compute the probable cause of each open break that has none yet (those
    the last run opened; any left blank by a failure before): the wallet and its
    ledger entries read once, at most BREAK_CAUSE_MAX_ENTRIES entries a wallet.
    Batch by batch, each claimed under a lease (revassure/leases.py): a second
    task (the run's delivered late, the sweep's) takes only what nobody holds,
    so each cause is computed once, and a batch whose worker died is taken
    again once its lease lapses. Returns how many were computed."""
    token, lease = uuid.uuid4().hex, settings.RECONCILE_LEASE_SECONDS
    computed = 0
    while chunk := _claim_blank(token, lease):
        mine = Break.objects.filter(pk__in=[brk.pk for brk in chunk], cause_claim=token)

        def renew(held=mine) -> bool:
            return held.update(cause_lease_until=dbclock.ahead(lease)) > 0

        with leases.Heartbeat(renew, lease):
            causes = _causes(chunk, gateway)
        with transaction.atomic():
            for brk, cause in zip(chunk, causes, strict=True):
                # Only while it is this worker's: one taken over meanwhile is the other's to fill.
                mine.filter(pk=brk.pk, cause="").update(
                    cause=cause.code,
                    cause_text=cause.text,
                    cause_evidence=cause.evidence,
                    cause_claim="",
                    cause_lease_until=None,
                )
        computed += len(chunk)
    return computed


def blank() -> QuerySet[Break]:
    """Open breaks whose cause nobody computes: none yet, and no live claim."""
    waiting = Break.objects.filter(cause="", status__in=OPEN_BREAK_STATES)
    return waiting.filter(leases.free("cause_lease_until"))


def _claim_blank(token: str, lease: float) -> list[Break]:
    """The next BATCH of blank breaks, claimed for this task (those another
    task claimed in between are its own)."""
    ids = list(blank().order_by("pk").values_list("pk", flat=True)[:BATCH])
    blank().filter(pk__in=ids).update(cause_claim=token, cause_lease_until=dbclock.ahead(lease))
    return list(Break.objects.filter(pk__in=ids, cause_claim=token).order_by("pk"))


def _causes(chunk: list[Break], gateway: FirestoreGateway) -> list[Cause]:
    limit = settings.BREAK_CAUSE_MAX_ENTRIES
    counts = {b.uid: b.entries for b in chunk}
    uids = list(counts)
    wallets = gateway.get_wallet_points(uids)
    readable = [uid for uid in uids if counts[uid] <= limit]
    ledgers = gateway.ledgers(readable, concurrency=settings.BREAK_CAUSE_CONCURRENCY)
    writers = writers_of(entry for entries in ledgers.values() for entry in entries)
    rebalances = _rebalances(uids)
    read_at = timezone.now().isoformat()
    causes = []
    for brk in chunk:
        if brk.uid not in ledgers:
            causes.append(
                Cause(
                    ProbableCause.UNEXPLAINED,
                    f"Not examined: the ledger has {brk.entries:,} entries, more than "
                    f"BREAK_CAUSE_MAX_ENTRIES ({limit:,})",
                    {"ledger_entries": brk.entries, "read_at": read_at},
                )
            )
            continue
        exists, points = wallets[brk.uid]
        cause = probable_cause(points, ledgers[brk.uid], exists=exists, writers=writers)
        evidence = {**cause.evidence, "read_at": read_at}
        rebalance = rebalances.get(brk.uid)
        if rebalance is not None:
            assert rebalance.applied_at is not None  # an applied request has its time
            evidence["last_rebalance"] = {
                "request": rebalance.pk,
                "applied_at": rebalance.applied_at.isoformat(),
                "audit_log_id": rebalance.ledger_entry_id,
            }
            if cause.code == ProbableCause.UNEXPLAINED and cause.evidence.get("delta"):
                cause = Cause(
                    ProbableCause.OUR_ENTRY,
                    f"No entry explains a delta of {signed(cause.evidence['delta'])}; the wallet's "
                    f"points were last set by request {rebalance.pk} (heal, rebalance) at "
                    f"{when(rebalance.applied_at)}",
                )
        causes.append(Cause(cause.code, cause.text, evidence))
    return causes


def _rebalances(uids: list[str]) -> dict[str, BalanceRequest]:
    """The latest applied rebalance of each wallet (they write auditLog records, not entries)."""
    found = {}
    applied = BalanceRequest.objects.filter(
        uid__in=uids, kind=RequestKind.HEAL, strategy=HealStrategy.REBALANCE, state=RequestState.APPLIED
    ).order_by("applied_at", "id")
    for request in applied:
        found[request.uid] = request
    return found
