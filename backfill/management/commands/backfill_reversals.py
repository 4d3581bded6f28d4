import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from backfill import file_replay, plan_approval, planner, run_requests, uploads
from backfill.models import MigrationKind
from backfill.reversals import BadCsv, csv_to_event_lines
from revassure.firestore import get_gateway
from revassure.logs import bound_correlation_id


class Command(BaseCommand):
    help = (
        "Backfill refunds and chargebacks from finance's CSV export (payment_id, refund_id, "
        "chargeback_id, user_id, points, created) with the replay's rules and outcomes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path")
        parser.add_argument("--dry-run", action="store_true")
        parser.add_argument(
            "--plan",
            type=int,
            metavar="MIGRATION_ID",
            help="bind the run to an approved dry run of this file: refuse if it would now do otherwise",
        )
        parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    def handle(
        self,
        *args: Any,
        path: str,
        dry_run: bool = False,
        json: bool = False,
        plan: int | None = None,
        **options: Any,
    ) -> None:
        source = Path(path)
        if not source.is_file():
            raise CommandError(f"no such file: {path}")
        if plan is not None and dry_run:
            raise CommandError("--plan binds a real run; it makes no sense with --dry-run")
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
