import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from backfill import completeness
from revassure.firestore import get_gateway


class Command(BaseCommand):
    help = (
        "List stored provider payments and reversals without their ledger entry, and business "
        "identities credited to more than one wallet; --replay puts the gaps back in line for a "
        "stored replay. Exits 1 when gaps remain unreplayed or doubles exist."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--replay", action="store_true", help="replay the gaps now (in a worker)")
        parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    def handle(self, *args: Any, replay: bool = False, json: bool = False, **options: Any) -> None:
        gateway = get_gateway()
        found = completeness.check(gateway)
        if replay:
            gaps, migration = completeness.replay_gaps(gateway)
        else:
            gaps, migration = found.gaps, None
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
        summary = {
            "gaps": len(rows),
            "items": rows,
            "doubles": found.doubles,
            "migration_id": migration.pk if migration else None,
            # A dry run when the gaps name more points than one person replays alone: its plan
            # waits for a second person's approval (backfill/plan_approval.py).
            "dry_run": migration.dry_run if migration else None,
        }
        if json:
            self.stdout.write(_dumps(summary))
        else:
            for row in rows:
                self.stdout.write(f"{row['user_id']}/{row['entry_id']}: {row['status']} {row['reason']}")
            for double in found.doubles:
                self.stdout.write(f"{double['entry_id']}: credited to {', '.join(double['wallets'])}")
            self.stdout.write(
                f"{len(rows)} gap(s), {len(found.doubles)} double(s)"
                + (_replayed(migration) if migration else "")
            )
        problems = []
        if rows and not replay:
            problems.append(f"{len(rows)} stored events have no ledger entry")
        if found.doubles:
            problems.append(f"{len(found.doubles)} business identities are credited to more than one wallet")
        if problems:
            raise CommandError("; ".join(problems), returncode=1)


def _replayed(migration) -> str:
    if migration.dry_run:
        return (
            f"; they name more points than one person replays alone: dry run {migration.pk} plans "
            "their replay for a second person to approve"
        )
    return f"; migration {migration.pk} replays the gaps"


def _dumps(data) -> str:
    return json.dumps(data, sort_keys=True)
