"""The life of a balance request (heal, correction, adjustment) through its
states (models.TRANSITIONS): each move checked and recorded as a RequestEvent,
the refusal they share, and expiry. reconciliation.changes proposes and
decides; reconciliation.execution applies; both move requests only here.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from reconciliation.models import TRANSITIONS, BalanceRequest, RequestEvent, RequestState
from revassure import metrics
from revassure.logs import on_commit
from revassure.refusals import Refused

log = logging.getLogger(__name__)


class RequestRefused(Refused):
    """A request cannot do what was asked; the message says why, for a person."""


def transition(
    request: BalanceRequest, to_state: str, *, actor=None, actor_label: str = "", reason: str
) -> None:
    if to_state not in TRANSITIONS.get(request.state, set()):
        raise RequestRefused(f"a {request.state} request cannot become {to_state}")
    RequestEvent.objects.create(
        request=request,
        from_state=request.state,
        to_state=to_state,
        actor=actor,
        actor_label=actor_label,
        reason=reason,
    )
    request.state = to_state
    request.save(update_fields=["state"])
    on_commit(lambda: metrics.balance_request(kind=request.kind, state=to_state))
    log.info("balance request %s", to_state, extra={"request_id": request.pk, "state": to_state})


def refusal_unless_open(request: BalanceRequest) -> str | None:
    """Why the request cannot be decided now, or None. Expires it when due
    (the caller commits that before refusing)."""
    if request.state == RequestState.PROPOSED and request.expires_at <= timezone.now():
        transition(request, RequestState.EXPIRED, actor_label="system:expiry", reason="not decided in time")
        return f"request {request.pk} expired at {request.expires_at:%Y-%m-%d %H:%M} UTC"
    if request.state != RequestState.PROPOSED:
        return f"request {request.pk} is {request.state}, not awaiting a decision"
    return None


def expire_due(now: datetime | None = None) -> int:
    """Expire proposals past their time; returns how many."""
    now = now or timezone.now()
    expired = 0
    for request_id in BalanceRequest.objects.filter(
        state=RequestState.PROPOSED, expires_at__lte=now
    ).values_list("pk", flat=True):
        with transaction.atomic():
            request = BalanceRequest.objects.select_for_update().get(pk=request_id)
            if request.state == RequestState.PROPOSED:
                transition(
                    request, RequestState.EXPIRED, actor_label="system:expiry", reason="not decided in time"
                )
                expired += 1
    return expired
