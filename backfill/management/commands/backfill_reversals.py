import json
from typing import Any

from django.core.management.base import CommandError

from backfill import file_replay, plan_approval, planner, run_requests, uploads
from backfill.management.replay_file import ReplayFileCommand
from backfill.models import MigrationKind
from backfill.reversals import BadCsv, csv_to_event_lines
from revassure.firestore import get_gateway
from revassure.logs import bound_correlation_id


class Command(ReplayFileCommand):
    help = (
        "Backfill refunds and chargebacks from finance's CSV export (payment_id, refund_id, "
        "chargeback_id, user_id, points, created) with the replay's rules and outcomes."
    )

    def handle(
        self,
        *args: Any,
        path: str,
        dry_run: bool = False,
        json: bool = False,
        plan: int | None = None,
        **options: Any,
    ) -> None:
        source = self.source(path, dry_run=dry_run, plan=plan)
        kind = MigrationKind.REVERSAL_CSV
        rejected: list[tuple[int, str]] = []
        gateway = get_gateway()
        try:
            if plan is None and not dry_run:
                how = f"backfill_reversals {path} --dry-run, then backfill_reversals {path} --plan <its id>"
                plan_approval.require_plan(uploads.named_points(source, kind), how=how)
            with bound_correlation_id():
                if plan is not None:
                    with uploads.open_lines(source, kind) as lines:
                        file_replay.verify_plan(plan, lines, path=str(source), kind=kind, gateway=gateway)
                # utf-8-sig: Excel starts its UTF-8 CSV files with a byte order mark.
                with source.open(newline="", encoding="utf-8-sig", errors="replace") as rows:
                    migration = run_requests.start_replay(path=str(source), dry_run=dry_run, kind=kind)
                    if plan is not None:
                        file_replay.bind_to_plan(migration, plan)
                    lines = csv_to_event_lines(rows, rejected=rejected)
                    migration = file_replay.run_replay(migration, lines, gateway=gateway)
        except (plan_approval.PlanRequired, planner.PlanMismatch) as exc:
            raise CommandError(f"refused, nothing written: {exc}") from exc
        except BadCsv as exc:
            raise CommandError(str(exc)) from exc
        summary = {
            "migration_id": migration.pk,
            "total": migration.total,
            **migration.outcomes(),
            "dry_run": dry_run,
            # Rows whose points are not a whole number in ASCII digits (quarantined, never coerced).
            "rejected": [{"line": line, "reason": reason} for line, reason in rejected],
        }
        if dry_run:
            summary["plan_checksum"] = migration.plan_checksum
        self.stdout.write(_dumps(summary) if json else str(summary))
        if migration.error:
            raise CommandError(f"migration {migration.pk}: {migration.error}")


def _dumps(data) -> str:
    return json.dumps(data, sort_keys=True)
