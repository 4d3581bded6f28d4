"""The cutover runbook as it stands, which every part of it reads: the cutover
in progress (at most one), its steps in order and the one that may be
confirmed next, who may act on it (ops run it, finance approvers accept a
reconciliation that found violations), the bound on its monitoring, the name
it holds the freeze under, and the refusal all of it raises.
"""

from __future__ import annotations

from cutover.models import Cutover, CutoverStatus, CutoverStep, StepKey, StepState
from revassure.refusals import Refused

RUN = "cutover.run_cutover"
ACCEPT = "cutover.accept_cutover_reconcile"
# Monitoring planned for longer than a week is a typo, and a number of minutes
# past what a date can add up to would break the cutover's page.
MAX_MONITOR_MINUTES = 7 * 24 * 60


class CutoverRefused(Refused):
    """The runbook refuses this now; the message says why and what to do instead."""


def current() -> Cutover | None:
    """The cutover in progress, if any (there is at most one)."""
    return Cutover.objects.filter(status=CutoverStatus.IN_PROGRESS).first()


def steps(cutover: Cutover) -> list[CutoverStep]:
    return list(cutover.steps.select_related("confirmed_by", "accepted_by").order_by("number"))


def next_step(cutover: Cutover) -> CutoverStep | None:
    """The first step not done yet: the only one that can be confirmed."""
    return cutover.steps.exclude(state=StepState.DONE).order_by("number").first()


def step_by_key(cutover: Cutover, key: str) -> CutoverStep:
    if key not in StepKey.values:
        raise CutoverRefused(f"there is no step {key!r}; the steps are {', '.join(StepKey.values)}")
    return cutover.steps.get(key=key)


def holder(cutover: Cutover) -> str:
    """The name a cutover holds the freeze under (revassure.freeze)."""
    return f"cutover:{cutover.pk}"
