"""Asking for a data migration run: a replay of an uploaded file, of a file named on the command line,
of the stored deliveries not applied yet, or a real run bound to its dry run's approved plan. Each
checks the permission, the flag and the plan, creates the migration and hands it to a worker
(backfill/runs.py holds its life from there)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.core.files import File
from django.db import transaction
from django.db.models import Max, QuerySet

from backfill import plan_approval, uploads
from backfill.models import (
    DataMigration,
    EventStatus,
    MigrationKind,
    MigrationSource,
    MigrationStatus,
    ProviderEventDelivery,
)
from backfill.runs import CHECKS, FLAG, enqueue_run, require_permission
from revassure import flags
from revassure.refusals import Refused

REPLAYABLE = (EventStatus.RECEIVED, EventStatus.DEFERRED, EventStatus.FAILED)


class BoundRunRefused(Refused, ValueError):
    """No real run may be bound to this plan now; the message says why, for a person."""


# How each entry point binds a real run to an approved plan, for the refusal of one that is not.
UPLOAD_HOW = 'upload it with "Dry run" ticked; its page offers "Run for real, bound to this plan"'
STORED_HOW = 'Data migrations → "Re-run stored events" with "Dry run" ticked; its page offers the real run'
# What a stored replay's parameters name: the deliveries it re-applies (and plans).
SELECTION = ("statuses", "since", "until", "last")


def request_file_replay(
    upload: File, *, dry_run: bool, actor: User | None, kind: str = MigrationKind.REPLAY_FILE
) -> DataMigration:
    """Check an uploaded file (an export of provider events, or finance's reversal
    CSV), keep it where the workers can read it, count its items and queue its
    replay. uploads.BadUpload, before anything is kept, when it is not that kind."""
    require_permission(actor)
    flags.require_enabled(FLAG)
    uploads.check(upload, kind)
    expected, named = uploads.measure_upload(upload, kind)
    if not dry_run:
        plan_approval.require_plan(named, how=UPLOAD_HOW)
    with transaction.atomic():
        migration = DataMigration.objects.create(
            kind=kind,
            source=MigrationSource.UPLOAD,
            parameters={"name": upload.name},
            dry_run=dry_run,
            started_by=actor,
        )
        migration.parameters.update(path=uploads.keep(upload, migration), expected=expected)
        migration.save(update_fields=["parameters"])
        enqueue_run(migration.pk)
    return migration


def bound_runs(plan: DataMigration) -> QuerySet[DataMigration]:
    """The real runs bound to a dry run (its plan)."""
    return DataMigration.objects.filter(dry_run=False, parameters__plan=plan.pk)


def bound_run_refusal(plan: DataMigration) -> str:
    """Why a real run cannot be bound to this migration's plan now ("" when it can)."""
    if not plan.dry_run:
        return "it is not a dry run"
    if plan.status != MigrationStatus.COMPLETED:
        return "the dry run has not completed"
    if plan.kind == MigrationKind.REPLAY_STORED:
        pass  # its deliveries are in the database, where every worker reads them
    elif plan.source != MigrationSource.UPLOAD:
        return "its file was named on a command line: run `replay_webhooks --plan` where that file is"
    elif not uploads.is_kept(plan):
        return "its uploaded file is no longer kept: upload it again"
    running = bound_runs(plan).exclude(status__in=[MigrationStatus.FAILED, MigrationStatus.CANCELLED])
    other = running.order_by("pk").first()
    if other is not None:
        return f"run {other.pk} is bound to it already ({other.get_status_display().lower()})"
    return plan_approval.run_refusal(plan)


def request_bound_run(plan_id: int, *, actor: User | None) -> DataMigration:
    """A real run of a completed dry run's uploaded file (or of the stored
    deliveries it planned), bound to that plan, for a worker: it plans them
    again first and refuses, writing nothing, unless the new plan is exactly
    this one (as `replay_webhooks --plan` does). ValueError with the reason
    when the plan cannot be run."""
    require_permission(actor)
    flags.require_enabled(FLAG)
    with transaction.atomic():
        plan = DataMigration.objects.select_for_update().filter(pk=plan_id).first()
        if plan is None:
            raise BoundRunRefused(f"there is no migration {plan_id}")
        refusal = bound_run_refusal(plan)
        if refusal:
            raise BoundRunRefused(f"migration {plan_id} cannot be run for real: {refusal}")
        names = SELECTION if plan.kind == MigrationKind.REPLAY_STORED else ("name", "path", "expected")
        parameters = {key: plan.parameters[key] for key in names if key in plan.parameters}
        migration = DataMigration.objects.create(
            kind=plan.kind,
            source=plan.source,
            parameters={**parameters, "plan": plan.pk},
            dry_run=False,
            started_by=actor,
        )
        enqueue_run(migration.pk)
    return migration


def start_replay(
    *,
    path: str,
    dry_run: bool,
    actor: User | None = None,
    kind: str = MigrationKind.REPLAY_FILE,
    source: str = MigrationSource.COMMAND,
    name: str = "",
    checks: int | None = None,
) -> DataMigration:
    """A migration for a file named on the command line (its command runs it),
    or for an upload's kept file that a worker plans again; `checks`: the plan
    a dry run is made to check a bound run against (nobody's plan to approve).
    The caller asks plan_approval.require_plan first for a real run."""
    require_permission(actor)
    flags.require_enabled(FLAG)
    extra: dict[str, str | int] = {"name": name} if name else {}
    if checks is not None:
        extra[CHECKS] = checks
    return DataMigration.objects.create(
        kind=kind,
        source=source,
        parameters={"path": path, **extra},
        dry_run=dry_run,
        started_by=actor,
    )


def request_stored_replay(
    *,
    actor: User | None = None,
    include_quarantined: bool = False,
    since: datetime | None = None,
    until: datetime | None = None,
    dry_run: bool = False,
    how: str = STORED_HOW,
) -> DataMigration:
    """A migration that re-applies stored deliveries not applied yet (received,
    deferred, failed; quarantined too after a fix), optionally in a time window,
    those there now (a delivery arriving later is the webhook drain's); a worker
    runs it. A dry run plans them instead; a real run whose deliveries name more
    points than one person may move alone is refused (PlanRequired, saying `how`
    to get a plan approved)."""
    require_permission(actor)
    flags.require_enabled(FLAG)
    statuses = [*REPLAYABLE, *([EventStatus.QUARANTINED] if include_quarantined else [])]
    parameters: dict[str, Any] = {
        "statuses": statuses,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
    }
    with transaction.atomic():
        parameters["last"] = stored_deliveries(parameters).aggregate(last=Max("pk"))["last"] or 0
        if not dry_run:
            raws = stored_deliveries(parameters).values_list("raw", flat=True).iterator()
            plan_approval.require_plan(plan_approval.named_points(raws), how=how)
        migration = DataMigration.objects.create(
            kind=MigrationKind.REPLAY_STORED,
            source=MigrationSource.DATABASE,
            parameters=parameters,
            dry_run=dry_run,
            started_by=actor,
        )
        enqueue_run(migration.pk)
    return migration


def stored_deliveries(parameters: dict) -> QuerySet[ProviderEventDelivery]:
    """The deliveries a stored replay names: in its statuses and time window, up
    to the last one stored when it was asked for (all, for one asked before
    that was kept)."""
    items = ProviderEventDelivery.objects.filter(status__in=parameters["statuses"])
    if parameters.get("since"):
        items = items.filter(received_at__gte=parameters["since"])
    if parameters.get("until"):
        items = items.filter(received_at__lt=parameters["until"])
    if parameters.get("last") is not None:
        items = items.filter(pk__lte=parameters["last"])
    return items
