from typing import Any

from django.core.management.base import BaseCommand

from reconciliation.schedule import sync_daily_schedule, sync_sweep_schedules


class Command(BaseCommand):
    help = "Create or update the daily reconciliation and the sweep schedules (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        for sweep in sync_sweep_schedules():
            self.stdout.write(f"{sweep.name}: every {sweep.minutes} minutes")
        schedule = sync_daily_schedule()
        self.stdout.write(
            f"{schedule.name}: cron '{schedule.cron}' (UTC), next run {schedule.next_run:%Y-%m-%d %H:%M}"
        )
