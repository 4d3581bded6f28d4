import json

from django.core.management.base import BaseCommand, CommandError

from backfill import completeness
from revassure.firestore import get_gateway


class Command(BaseCommand):
    help = (
        "List stored provider payments and reversals without their ledger entry; --replay puts "
        "them back in line for a stored replay. Exits 1 when gaps remain unreplayed."
    )

    def add_arguments(self, parser):
        parser.add_argument("--replay", action="store_true", help="replay the gaps now (in a worker)")
        parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    def handle(self, *args, replay: bool = False, json: bool = False, **options):
        gateway = get_gateway()
        if replay:
            gaps, migration = completeness.replay_gaps(gateway)
        else:
            gaps, migration = completeness.find_gaps(gateway), None
        rows = [
            {
                "delivery_id": g.pk,
                "event_id": g.event_id,
                "user_id": g.user_id,
                "entry_id": g.entry_id,
                "status": g.status,
                "reason": g.reason,
            }
            for g in gaps
        ]
        summary = {"gaps": len(rows), "items": rows, "migration_id": migration.pk if migration else None}
        if json:
            self.stdout.write(_dumps(summary))
        else:
            for row in rows:
                self.stdout.write(f"{row['user_id']}/{row['entry_id']}: {row['status']} {row['reason']}")
            self.stdout.write(
                f"{len(rows)} gap(s)" + (f"; migration {migration.pk} replays them" if migration else "")
            )
        if rows and not replay:
            raise CommandError(f"{len(rows)} stored events have no ledger entry", returncode=1)


def _dumps(data) -> str:
    return json.dumps(data, sort_keys=True)
