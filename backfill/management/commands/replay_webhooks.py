import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from backfill import file_replay, plan_approval, planner, run_requests, uploads
from backfill.models import MigrationKind
from revassure.firestore import get_gateway
from revassure.logs import bound_correlation_id


class Command(BaseCommand):
    help = (
        "Replay a JSON Lines export of provider events as a tracked data migration. Each event "
        "is stored raw, then applied exactly once; --dry-run writes nothing to Firestore and "
        "prints the plan's checksum."
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
        if plan is None and not dry_run:
            try:
                plan_approval.require_plan(
                    uploads.named_points(source, MigrationKind.REPLAY_FILE),
                    how=f"replay_webhooks {path} --dry-run, then replay_webhooks {path} --plan <its id>",
                )
            except plan_approval.PlanRequired as exc:
                raise CommandError(f"refused, nothing written: {exc}") from exc
        gateway = get_gateway()
        with bound_correlation_id():
            if plan is not None:
                try:
                    with source.open(encoding="utf-8", errors="replace") as lines:
                        file_replay.verify_plan(
                            plan, lines, path=str(source), kind=MigrationKind.REPLAY_FILE, gateway=gateway
                        )
                except planner.PlanMismatch as exc:
                    raise CommandError(f"refused, nothing written: {exc}") from exc
            migration = run_requests.start_replay(path=str(source), dry_run=dry_run)
            if plan is not None:
                file_replay.bind_to_plan(migration, plan)
            with source.open(encoding="utf-8", errors="replace") as lines:
                migration = file_replay.run_replay(migration, lines, gateway=gateway)
        summary: dict[str, object] = {
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
        if migration.error:
            raise CommandError(f"migration {migration.pk}: {migration.error}")


def _dumps(data) -> str:
    return json.dumps(data, sort_keys=True)
