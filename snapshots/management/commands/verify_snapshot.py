import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from revassure.files import BadLocation
from revassure.formatting import points, signed
from snapshots import services

VIOLATIONS_SHOWN = 50  # in the text output; --json lists them all


class Command(BaseCommand):
    help = (
        "Check a snapshot (a directory, or gs://bucket/prefix) from its files alone (no Firestore): "
        "every file, SHA-256, line and count "
        "against the manifest, and every wallet's points against its ledger. Exits 2, naming the "
        "file and line, when the snapshot is not intact; wallets that differ from their ledger are "
        "findings about the data and do not change the exit code."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", metavar="PATH")
        parser.add_argument(
            "--manifest-sha256",
            metavar="HEX",
            help="the manifest's SHA-256 as recorded when the snapshot was taken: vouch for the manifest too",
        )
        parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    def handle(
        self, *args: Any, path: str, manifest_sha256: str | None = None, json: bool = False, **options: Any
    ) -> None:
        try:
            result = services.verify(path, manifest_sha256=manifest_sha256)
        except BadLocation as exc:
            raise CommandError(str(exc)) from exc
        except OSError as exc:  # Cloud Storage refusing or out of reach: the snapshot could not be read
            raise CommandError(f"the snapshot could not be read: {exc}") from exc
        if json:
            self.stdout.write(_dumps(result.as_json()))
        else:
            for error in result.errors:
                self.stderr.write(error)
            state = "intact" if result.ok else "NOT intact"
            self.stdout.write(
                f"Snapshot {path}: {state}; {points(result.wallets)} wallets, "
                f"{points(result.entries)} ledger entries."
            )
            if result.violations:
                self.stdout.write(
                    f"{points(len(result.violations))} wallet(s) whose points differ from their ledger:"
                )
            for violation in result.violations[:VIOLATIONS_SHOWN]:
                delta = f" ({signed(violation.delta)})" if violation.delta is not None else ""
                self.stdout.write(f"  {violation.uid}: {violation.reason}{delta}")
            if len(result.violations) > VIOLATIONS_SHOWN:
                self.stdout.write(
                    f"  … and {len(result.violations) - VIOLATIONS_SHOWN} more (--json lists them all)"
                )
        if not result.ok:
            raise CommandError(f"{len(result.errors)} problem(s): the snapshot is not intact", returncode=2)


def _dumps(data: dict) -> str:
    return json.dumps(data, sort_keys=True)
