from typing import Any

from django.core.management.base import BaseCommand

from reconciliation.schedule import sync_daily_schedule
from revassure import schedules


class Command(BaseCommand):
    help = "Create or update the daily reconciliation and every app's periodic schedules (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        for sweep in schedules.sync():
            self.stdout.write(f"{sweep.name}: every {sweep.minutes} minutes")
        schedule = sync_daily_schedule()
        self.stdout.write(
            f"{schedule.name}: cron '{schedule.cron}' (UTC), next run {schedule.next_run:%Y-%m-%d %H:%M}"
        )
