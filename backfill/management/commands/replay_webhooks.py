import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from backfill import replay
from revassure.firestore import get_gateway
from revassure.logs import bound_correlation_id


class Command(BaseCommand):
    help = (
        "Replay a JSON Lines export of provider events as a tracked data migration. Each event "
        "is stored raw, then applied exactly once; --dry-run writes nothing to Firestore and "
        "prints the plan's checksum."
    )

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--dry-run", action="store_true")
        parser.add_argument(
            "--plan",
            type=int,
            metavar="MIGRATION_ID",
            help="bind the run to an approved dry run of this file: refuse if it would now do otherwise",
        )
        parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    def handle(self, *args, path: str, dry_run: bool = False, json: bool = False, plan=None, **options):
        source = Path(path)
        if not source.is_file():
            raise CommandError(f"no such file: {path}")
        if plan is not None:
            if dry_run:
                raise CommandError("--plan binds a real run; it makes no sense with --dry-run")
            try:
                with source.open(encoding="utf-8", errors="replace") as lines:
                    replay.check_plan(plan, lines, gateway=get_gateway())
            except replay.PlanMismatch as exc:
                raise CommandError(f"refused, nothing written: {exc}") from exc
        with bound_correlation_id():
            migration = replay.start_replay(path=str(source), dry_run=dry_run)
            with source.open(encoding="utf-8", errors="replace") as lines:
                migration = replay.run_replay(
                    migration,
                    lines,
                    gateway=get_gateway(),
                    allow_negative=settings.BACKFILL_ALLOW_NEGATIVE_BALANCE,
                )
        summary = {
            "migration_id": migration.pk,
            "total": migration.total,
            **migration.outcomes(),
            "dry_run": migration.dry_run,
        }
        if migration.dry_run:
            summary["plan_checksum"] = migration.plan_checksum
        if json:
            self.stdout.write(_dumps(summary))
        else:
            counts = ", ".join(f"{n} {name}" for name, n in migration.outcomes().items())
            label = f"Migration {migration.pk}" + (" (dry run)" if dry_run else "")
            self.stdout.write(f"{label}: {migration.total} events: {counts}.")


def _dumps(data) -> str:
    return json.dumps(data, sort_keys=True)
