"""Completeness: every stored provider payment and reversal has its ledger entry.

Entry ids derive from the business identity, so there is at most one entry per
payment, refund or chargeback; a gap is a stored event whose entry is not in its
wallet's ledger (quarantined, deferred, failed, or lost since). Gaps can be
replayed at once: they go back to `received` and a stored replay picks them up.
"""

from django.db import transaction

from backfill import runs
from backfill.models import EventStatus, ProviderEventDelivery
from revassure.firestore import FirestoreGateway


def find_gaps(gateway: FirestoreGateway) -> list[ProviderEventDelivery]:
    """The newest delivery of each stored event whose ledger entry is missing."""
    newest: dict[tuple[str, str], int] = {}
    parsed = ProviderEventDelivery.objects.exclude(entry_id="").exclude(user_id="")
    for pk, user_id, entry_id in parsed.order_by("pk").values_list("pk", "user_id", "entry_id").iterator():
        newest[(user_id, entry_id)] = pk
    present = gateway.entries_exist(list(newest))
    missing = [pk for key, pk in newest.items() if not present[key]]
    return list(ProviderEventDelivery.objects.filter(pk__in=missing).order_by("received_at", "pk"))


def replay_gaps(gateway: FirestoreGateway, *, actor=None):
    """Put every gap back in line and start a stored replay of them (one click)."""
    runs.require_permission(actor)
    gaps = find_gaps(gateway)
    with transaction.atomic():
        ProviderEventDelivery.objects.filter(pk__in=[gap.pk for gap in gaps]).update(
            status=EventStatus.RECEIVED
        )
        migration = runs.request_stored_replay(actor=actor)
    return gaps, migration
