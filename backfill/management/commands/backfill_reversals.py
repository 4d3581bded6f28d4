import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from backfill import file_replay, runs
from backfill.models import MigrationKind
from backfill.reversals import BadCsv, csv_to_event_lines
from revassure.firestore import get_gateway
from revassure.logs import bound_correlation_id


class Command(BaseCommand):
    help = (
        "Backfill refunds and chargebacks from finance's CSV export (payment_id, refund_id, "
        "chargeback_id, user_id, points, created) with the replay's rules and outcomes."
    )

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--dry-run", action="store_true")
        parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    def handle(self, *args, path: str, dry_run: bool = False, json: bool = False, **options):
        source = Path(path)
        if not source.is_file():
            raise CommandError(f"no such file: {path}")
        rejected: list[tuple[int, str]] = []
        # utf-8-sig: Excel starts its UTF-8 CSV files with a byte order mark.
        with bound_correlation_id(), source.open(newline="", encoding="utf-8-sig", errors="replace") as rows:
            migration = runs.start_replay(path=str(source), dry_run=dry_run, kind=MigrationKind.REVERSAL_CSV)
            try:
                lines = csv_to_event_lines(rows, rejected=rejected)
                migration = file_replay.run_replay(migration, lines, gateway=get_gateway())
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


def _dumps(data) -> str:
    return json.dumps(data, sort_keys=True)
