import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from observability import alerts


class Command(BaseCommand):
    help = "Evaluate every enabled alert rule once: open, repeat and resolve alerts."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print the outcome as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        result = alerts.evaluate()
        if options["json"]:
            self.stdout.write(json.dumps(result.as_json()))
            return
        for alert in result.opened:
            self.stdout.write(f"opened #{alert.pk} {alert.rule.name}: {alert.summary}")
        for alert in result.resolved:
            self.stdout.write(f"resolved #{alert.pk} {alert.rule.name}: {alert.summary}")
        self.stdout.write(f"{result.open} open, {result.notified} notified")
