"""Completeness: every stored provider payment and reversal has its ledger entry.

Entry ids derive from the business identity, so there is at most one entry per
payment, refund or chargeback; a gap is a stored event whose entry is not in its
wallet's ledger (quarantined, deferred, failed, or lost since). Gaps can be
replayed at once: they go back to `received` and a stored replay picks them up.

A double is the other way round: one business identity in more than one
wallet's ledger (the same payment credited to two users). New credits cannot
make one (the identity is claimed globally in the commit that credits it);
the check finds those already in the data, for finance to reverse.
"""

from collections import defaultdict
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import transaction

from backfill import plan_approval, run_requests, runs
from backfill.models import DataMigration, EventStatus, ProviderEventDelivery
from revassure.firestore import FirestoreGateway


def find_gaps(gateway: FirestoreGateway) -> list[ProviderEventDelivery]:
    """The newest delivery of each stored event whose ledger entry is missing.

    An entry held by another wallet is no gap: that delivery carried a
    business identity already credited elsewhere (see find_doubles)."""
    return check(gateway).gaps


def find_doubles(gateway: FirestoreGateway) -> list[dict]:
    """Business identities (payment, refund, chargeback) held by more than one
    wallet's ledger: a credit made twice, from before identities were global
    or written around revassure. [{"entry_id", "wallets"}], by entry id."""
    return check(gateway).doubles


@dataclass(frozen=True)
class Completeness:
    gaps: list[ProviderEventDelivery]
    doubles: list[dict]


def check(gateway: FirestoreGateway) -> Completeness:
    """Gaps and doubles, from one pass over the stored deliveries and one batched
    read of the entries they name."""
    newest: dict[tuple[str, str], int] = {}
    parsed = ProviderEventDelivery.objects.exclude(entry_id="").exclude(user_id="")
    for pk, user_id, entry_id in parsed.order_by("pk").values_list("pk", "user_id", "entry_id").iterator():
        newest[(user_id, entry_id)] = pk
    present = gateway.entries_exist(list(newest))
    holders: dict[str, list[str]] = defaultdict(list)
    for (user_id, entry_id), found in present.items():
        if found:
            holders[entry_id].append(user_id)
    missing = [
        pk
        for (user_id, entry_id), pk in newest.items()
        if not present[(user_id, entry_id)] and not holders[entry_id]
    ]
    gaps = list(ProviderEventDelivery.objects.filter(pk__in=missing).order_by("received_at", "pk"))
    doubles = [
        {"entry_id": entry_id, "wallets": sorted(wallets)}
        for entry_id, wallets in sorted(holders.items())
        if len(wallets) > 1
    ]
    return Completeness(gaps, doubles)


def replay_gaps(
    gateway: FirestoreGateway, *, actor: User | None = None
) -> tuple[list[ProviderEventDelivery], DataMigration]:
    """Put every gap back in line and start a stored replay of them (one click):
    a real one when one person may run it alone, else a dry run, its plan for a
    second person to approve (backfill/plan_approval.py)."""
    runs.require_permission(actor)
    gaps = find_gaps(gateway)
    with transaction.atomic():
        ProviderEventDelivery.objects.filter(pk__in=[gap.pk for gap in gaps]).update(
            status=EventStatus.RECEIVED
        )
        try:
            with transaction.atomic():
                migration = run_requests.request_stored_replay(actor=actor)
        except plan_approval.PlanRequired:
            migration = run_requests.request_stored_replay(actor=actor, dry_run=True)
    return gaps, migration
