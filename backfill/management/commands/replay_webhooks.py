import json
from typing import Any

from django.core.management.base import CommandError

from backfill import file_replay, plan_approval, planner, run_requests, uploads
from backfill.management.replay_file import ReplayFileCommand
from backfill.models import MigrationKind
from revassure.firestore import get_gateway
from revassure.logs import bound_correlation_id


class Command(ReplayFileCommand):
    help = (
        "Replay a JSON Lines export of provider events as a tracked data migration. Each event "
        "is stored raw, then applied exactly once; --dry-run writes nothing to Firestore and "
        "prints the plan's checksum."
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
                    with uploads.open_lines(source, MigrationKind.REPLAY_FILE) as lines:
                        file_replay.verify_plan(
                            plan, lines, path=str(source), kind=MigrationKind.REPLAY_FILE, gateway=gateway
                        )
                except planner.PlanMismatch as exc:
                    raise CommandError(f"refused, nothing written: {exc}") from exc
            migration = run_requests.start_replay(path=str(source), dry_run=dry_run)
            if plan is not None:
                file_replay.bind_to_plan(migration, plan)
            with uploads.open_lines(source, MigrationKind.REPLAY_FILE) as lines:
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
