"""Where to look for an alert: the page in the product that shows what it is
about (the run, the break, the migration, the freeze...), one function per
rule beside the rules themselves. The alert's page and its email link there.

Read when asked (a notification is sent a moment after the evaluation): an
alert keyed by an object (a migration) names that object; the others name what
is true now (the last full run, the oldest open break), which is what someone
opening the link wants to see.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from django.urls import reverse

from observability.collector import last_full_run
from observability.models import Alert, RuleName
from reconciliation.models import OPEN_BREAK_STATES, Break, ReconciliationRun, RunStatus
from revassure.admin_base import row_id

# (what the link says, the path in the product)
Target = tuple[str, str]


def _last_run(alert: Alert) -> Target | None:
    run = last_full_run()
    if run is None:
        return "Reconciliation runs", reverse("admin:reconciliation_reconciliationrun_changelist")
    return f"Run {run.pk}", reverse("admin:reconciliation_reconciliationrun_change", args=[run.pk])


def _violations(alert: Alert) -> Target | None:
    run = last_full_run()
    if run is None:
        return _last_run(alert)
    url = reverse("admin:reconciliation_violation_changelist") + "?" + urlencode({"run__id__exact": run.pk})
    return f"The violations of run {run.pk}", url


def _runs(alert: Alert) -> Target:
    return "Reconciliation runs", reverse("admin:reconciliation_reconciliationrun_changelist")


def _migration(alert: Alert) -> Target | None:
    kind, _, number = alert.key.partition(":")
    pk = row_id(number)
    if kind == "migration" and pk is not None:
        return f"Data migration {pk}", reverse("admin:backfill_datamigration_change", args=[pk])
    return None


def _job(alert: Alert) -> Target | None:
    found = _migration(alert)
    if found is not None:
        return found
    failed = ReconciliationRun.objects.filter(status=RunStatus.FAILED).order_by("-pk").first()
    if failed is None:
        return _runs(alert)
    return f"Run {failed.pk}", reverse("admin:reconciliation_reconciliationrun_change", args=[failed.pk])


def _oldest_break(alert: Alert) -> Target:
    oldest = Break.objects.filter(status__in=OPEN_BREAK_STATES).order_by("first_seen", "pk").first()
    if oldest is None:
        return "Breaks", reverse("admin:reconciliation_break_changelist")
    return (
        f"The oldest open break ({oldest.uid})",
        reverse("admin:reconciliation_break_change", args=[oldest.pk]),
    )


def _deliveries(alert: Alert) -> Target:
    return "Webhook deliveries", reverse("admin:backfill_providereventdelivery_changelist")


def _freeze(alert: Alert) -> Target:
    return "The freeze", reverse("admin:revassure_freezeevent_changelist")


def _requests(alert: Alert) -> Target:
    url = reverse("admin:reconciliation_balancerequest_changelist") + "?state__exact=proposed"
    return "Balance requests waiting for a decision", url


def _dashboard(alert: Alert) -> Target:
    return "The dashboard", reverse("admin:index")


def _alerts(alert: Alert) -> Target:
    return "Open alerts", reverse("admin:observability_alert_changelist") + "?active=yes"


TARGETS: dict[str, Callable[[Alert], Target | None]] = {
    RuleName.VIOLATIONS_FOUND: _violations,
    RuleName.DRIFT_ABOVE: _last_run,
    RuleName.LIABILITY_MISMATCH: _last_run,
    RuleName.RECONCILIATION_STALE: _runs,
    RuleName.JOB_FAILED: _job,
    RuleName.WEBHOOKS_UNHEALTHY: _deliveries,
    RuleName.FREEZE_TOO_LONG: _freeze,
    RuleName.APPROVALS_WAITING: _requests,
    RuleName.MIGRATION_STALLED: _migration,
    RuleName.BREAK_OLDER_THAN: _oldest_break,
    RuleName.WATCHER_DOWN: _dashboard,
    RuleName.COULD_NOT_EVALUATE: _alerts,
    RuleName.TOO_MANY_ALERTS: _alerts,
}


def where_to_look(alert: Alert) -> Target | None:
    """(label, path) of the page that shows what the alert is about, or None."""
    return TARGETS[alert.rule.name](alert)
