import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from reconciliation import breaks
from reconciliation.models import OPEN_BREAK_STATES, Break, BreakStatus


class Command(BaseCommand):
    help = (
        "List breaks (one wallet's drift followed across runs): age, sightings, owner, probable "
        "cause and how each ended. Open breaks by default (open or acknowledged), oldest first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--status",
            choices=("open", "closed", "all"),
            default="open",
            help="open (open or acknowledged, the default), closed, or all",
        )
        parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    def handle(self, *args: Any, status: str = "open", json: bool = False, **options: Any) -> None:
        found = Break.objects.select_related("owner").order_by("first_seen", "-size", "pk")
        if status == "open":
            found = found.filter(status__in=OPEN_BREAK_STATES)
        elif status == "closed":
            found = found.filter(status=BreakStatus.CLOSED)
        now = timezone.now()
        listed = list(found)
        corrections = breaks.corrections_of([brk.pk for brk in listed])
        rows = [breaks.summary(brk, now, corrections.get(brk.pk, [])) for brk in listed]
        if json:
            self.stdout.write(_dumps({"breaks": rows}))
            return
        if not rows:
            self.stdout.write(f"No {'' if status == 'all' else status + ' '}breaks.")
            return
        for brk, row in zip(listed, rows, strict=True):
            ended = f", {row['resolution']}" if row["resolution"] else ""
            owner = row["owner"] or "nobody"
            self.stdout.write(
                f"#{row['id']} {row['uid']}: {row['status']}{ended}, {row['kind']} delta {row['delta']}, "
                f"{row['age_days']} days old, seen {row['sightings']} times, owner {owner}\n"
                f"    {brk.cause_text or 'probable cause not computed yet'}"
            )
            for correction in row["corrections"]:
                self.stdout.write(
                    f"    correction #{correction['request']} ({correction['state']}): entry "
                    f"{correction['supersedes']} superseded by {correction['entry']} "
                    f"({correction['amount']:+,} points)"
                )


def _dumps(data) -> str:
    return json.dumps(data)
