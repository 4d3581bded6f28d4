"""What the two file replay commands (replay_webhooks, backfill_reversals) share:
their arguments and the checks on them before anything is read."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser


class ReplayFileCommand(BaseCommand):
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

    def source(self, path: str, *, dry_run: bool, plan: int | None) -> Path:
        """The file to replay; CommandError when it is not one, or --plan comes with --dry-run."""
        source = Path(path)
        if not source.is_file():
            raise CommandError(f"no such file: {path}")
        if plan is not None and dry_run:
            raise CommandError("--plan binds a real run; it makes no sense with --dry-run")
        return source
