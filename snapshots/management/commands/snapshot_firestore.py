import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from revassure.files import BadLocation
from revassure.firestore import FirestoreError, get_gateway
from revassure.formatting import points
from revassure.logs import bound_correlation_id
from snapshots import services, writer
from snapshots.models import Verification


class Command(BaseCommand):
    help = (
        "Stream every wallet with its ledger, and the product's own collections, from the configured "
        "Firestore into OUT_DIR (a directory, or gs://bucket/prefix in Cloud Storage): gzip-compressed "
        "JSON Lines with a manifest of SHA-256 sums, verified once written. Running it again on an "
        "interrupted snapshot's place completes it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("out_dir", metavar="OUT_DIR")
        parser.add_argument(
            "--wallets-per-part",
            type=int,
            default=writer.WALLETS_PER_PART,
            help="wallets in each wallets-NNNNNN file (a restart keeps the files finished)",
        )
        parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    def handle(
        self, *args: Any, out_dir: str, wallets_per_part: int, json: bool = False, **options: Any
    ) -> None:
        if wallets_per_part < 1:
            raise CommandError("--wallets-per-part must be at least 1")
        with bound_correlation_id():
            try:
                snapshot = services.take(
                    out_dir, actor=None, gateway=get_gateway(), wallets_per_part=wallets_per_part
                )
            except (writer.SnapshotRefused, services.SnapshotBusy) as exc:
                raise CommandError(f"refused: {exc}") from exc
            except FirestoreError as exc:
                # Out of reach (the retry deadline passed) or refusing: one line, no traceback.
                raise CommandError(
                    f"the snapshot stopped, {services.readable(exc)}; run the command again to carry on"
                ) from exc
            except BadLocation as exc:
                raise CommandError(f"refused: {exc}") from exc
            except OSError as exc:  # the disk, or Cloud Storage refusing or out of reach
                raise CommandError(f"the snapshot stopped: {exc}; run the command again to carry on") from exc
        if snapshot.managed_export_state:
            self.stderr.write(f"Managed export: {snapshot.managed_export_state}")
        if json:
            self.stdout.write(
                _dumps(
                    {
                        "path": snapshot.path,
                        "wallets": snapshot.wallets,
                        "entries": snapshot.entries,
                        "points_total": snapshot.points_total,
                        "ledger_total": snapshot.ledger_total,
                        "manifest_sha256": snapshot.manifest_sha256,
                    }
                )
            )
        else:
            self.stdout.write(
                f"Snapshot {snapshot.pk} of {snapshot.project} in {snapshot.path}: "
                f"{points(snapshot.wallets)} wallets, {points(snapshot.entries)} ledger entries, "
                f"{points(snapshot.documents)} documents in {snapshot.seconds:.1f} s; "
                f"manifest SHA-256 {snapshot.manifest_sha256}."
            )
            if snapshot.violations_count:
                self.stdout.write(
                    f"{points(snapshot.violations_count)} wallet(s) whose points differ from their ledger "
                    "(findings about the data; verify_snapshot lists them)."
                )
        if snapshot.verification != Verification.INTACT:
            raise CommandError(
                "the snapshot was written but does not verify: "
                + "; ".join(snapshot.verification_errors[:3]),
                returncode=2,
            )


def _dumps(data: dict) -> str:
    return json.dumps(data, sort_keys=True)
