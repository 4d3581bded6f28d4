import json
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from revassure.firestore import get_gateway
from revassure.logs import bound_correlation_id
from revassure.timezones import OUT_OF_RANGE, in_utc
from settlement import services, statement
from settlement.models import OUTCOMES, Outcome


def _time(value: str) -> datetime:
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise CommandError(f"--period: {value!r} is not an ISO 8601 time with a time zone")
    utc = in_utc(parsed)
    if utc is None:
        raise CommandError(f"--period: {value!r} {OUT_OF_RANGE}")
    return utc


class Command(BaseCommand):
    help = (
        "Match PayNow's settlement statement (CSV) against the ledger and the stored deliveries, and "
        "seal the report. Exits 0 when it ran, whatever it found; non-zero when it could not run "
        "(not a statement, a file that cannot be read)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", metavar="PATH")
        parser.add_argument(
            "--dry-run", action="store_true", help="match and count, keep nothing (no run, no mirror)"
        )
        parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        parser.add_argument(
            "--period",
            nargs=2,
            metavar=("START", "END"),
            help="the period applied payments are compared over (ISO 8601 with a zone); "
            "default: the statement's earliest to latest settled_at",
        )

    def handle(
        self,
        *args: Any,
        path: str,
        dry_run: bool = False,
        json: bool = False,
        period: list[str] | None = None,
        **options: Any,
    ) -> None:
        window = (_time(period[0]), _time(period[1])) if period else None
        with bound_correlation_id():
            try:
                result = services.reconcile_file(path, gateway=get_gateway(), dry_run=dry_run, period=window)
            except OSError as exc:
                raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from exc
            except (statement.BadStatement, ValueError) as exc:
                raise CommandError(f"{path} was not matched: {exc}") from exc
            except Exception as exc:
                raise CommandError(f"settlement could not run: {type(exc).__name__}: {exc}") from exc
        if result.repeat_of is not None:
            # stderr: stdout holds exactly the summary's keys.
            self.stderr.write(
                f"This file (SHA-256 {result.repeat_of.file_sha256}) was imported before as settlement "
                f"run {result.repeat_of.pk}; matched again against the ledger as it is now."
            )
        summary = result.summary
        if json:
            self.stdout.write(_dumps(summary))
            return
        head = "Dry run (nothing kept)" if result.dry_run else f"Settlement run {summary['run_id']}"
        found = ", ".join(f"{summary[name]} {Outcome(name).label}" for name in OUTCOMES)
        self.stdout.write(
            f"{head}: {summary['rows']} rows: {found}; {summary['malformed_rows']} malformed. "
            f"Checksum {summary['checksum'] or '-'}"
        )


def _dumps(data: dict) -> str:
    return json.dumps(data)
