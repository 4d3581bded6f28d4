"""How a balance change (a heal, a correction, a manual adjustment) reads on
the admin's pages: its effect on the customer in words, its audit trail, the
freeze that holds it, the link to its wallet, and the form page the proposing
and deciding pages are drawn on (the break's, the violations', settlement's)."""

from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import urlencode

from reconciliation import effects
from reconciliation.models import BalanceRequest, RequestState
from revassure.formatting import label, points, signed, when
from revassure.models import FreezeEvent

FORM_PAGE = "admin/reconciliation/form_page.html"
TRAIL = "admin/reconciliation/balancerequest/trail.html"


def wallet_url(uid: str) -> str:
    """The wallet page of a uid (the wallets app's admin view, by its URL name)."""
    return reverse("admin:wallet_lookup") + "?" + urlencode({"uid": uid})


def frozen_text(event: FreezeEvent) -> str:
    return (
        f"Manual balance changes are frozen since {when(event.created_at)} by {event.actor}: "
        f"{event.reason.rstrip().rstrip('.')}. Ops unfreeze them from the freeze page."
    )


def effect_text(effect: effects.Effect) -> str:
    """A change's effect as the customer sees it first, their balance, then the ledger."""
    if effect.points_after != effect.points_before:
        before, after = points(effect.points_before), points(effect.points_after)
        balance = f"the customer's balance goes {before} → {after} points"
    else:
        balance = f"the customer's balance stays {points(effect.points_before)} points"
    if effect.ledger_after != effect.ledger_before:
        return (
            f"{balance}; the ledger goes {points(effect.ledger_before)} → {points(effect.ledger_after)} "
            f"(an entry of {signed(effect.ledger_after - effect.ledger_before)})"
        )
    return f"{balance}; the ledger stays {points(effect.ledger_before)}"


def trail(request: BalanceRequest) -> str:
    """The request's audit trail as an HTML table (the change and decide pages)."""
    rows = [
        {
            "when": when(event.created_at),
            "who": event.actor or event.actor_label,
            "change": (
                f"{state_label(event.from_state)} → {state_label(event.to_state)}"
                if event.from_state and event.from_state != event.to_state
                else state_label(event.to_state)
            ),
            "why": event.reason,
            "correlation_id": event.correlation_id,
        }
        for event in request.events.select_related("actor")
    ]
    return render_to_string(TRAIL, {"rows": rows})


def state_label(state: str) -> str:
    return RequestState(state).label if state in RequestState.values else label(state)
