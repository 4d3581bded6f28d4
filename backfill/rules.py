"""What a provider event does to a wallet, decided from the state it finds.

One pure function serves the real application (inside a Firestore transaction)
and the dry run (over reads and the run's own planned writes), so a plan can
never disagree with what a run would do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backfill.events import REFUND, ProviderEvent
from revassure.firestore import WalletView
from revassure.formatting import points
from revassure.ledger import is_points


@dataclass(frozen=True)
class Decision:
    status: str  # applied | duplicate | deferred | quarantined
    reason: str = ""
    entry: dict[str, Any] | None = None  # the ledger entry to create, when applied


def decide(event: ProviderEvent, view: WalletView, *, allow_negative: bool) -> Decision:
    if view.entry_exists:
        return Decision("duplicate", f"{event.entry_id} is already in the ledger")
    if view.identity_owner is not None:
        # A payment, refund or chargeback credits one wallet, once, across the ledger.
        if view.identity_owner != event.user_id:
            return Decision(
                "quarantined",
                f"{event.entry_id} is already credited to wallet {view.identity_owner}; "
                f"not credited to {event.user_id} as well",
            )
        return Decision(
            "quarantined",
            f"{event.entry_id} was credited to this wallet once but its entry is gone from the ledger",
        )
    if not view.wallet_exists:
        return Decision("quarantined", f"unknown user {event.user_id!r}: no wallet")
    if not is_points(view.points):
        return Decision("quarantined", f"wallet {event.user_id} has malformed points {view.points!r}")
    base = {
        "eventId": event.event_id,
        "createdAt": event.created,
        "source": "paynow",
        "paymentId": event.payment_id,
    }
    if event.amount > 0:
        return Decision("applied", entry={**base, "type": "purchase", "amount": event.amount})
    if view.original_amount is None:
        return Decision("deferred", f"original {event.original_entry_id} is not in the ledger yet")
    if not is_points(view.original_amount):
        return Decision(
            "quarantined", f"{event.original_entry_id} has a malformed amount {view.original_amount!r}"
        )
    left = view.original_amount + view.reversed_before
    if -event.amount > left:
        return Decision(
            "quarantined",
            f"reversal of {points(-event.amount)} exceeds the {points(left)} points left of "
            f"{event.original_entry_id}",
        )
    after = view.points + event.amount
    note = ""
    if after < 0:
        if not allow_negative:
            return Decision(
                "quarantined",
                f"would take the wallet from {points(view.points)} to {points(after)} points; "
                "negative balances are not allowed",
            )
        note = f"wallet goes to {points(after)} points (negative balances allowed)"
    key = "refundId" if event.type == REFUND else "chargebackId"
    entry = {
        **base,
        "type": "reversal",
        "amount": event.amount,
        "reverses": event.original_entry_id,
        key: event.reversal_id,
    }
    return Decision("applied", note, entry=entry)
