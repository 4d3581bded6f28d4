from django.core.management.base import BaseCommand

from reconciliation.schedule import sync_daily_schedule


class Command(BaseCommand):
    help = "Create or update the daily reconciliation schedule from settings (idempotent)."

    def handle(self, *args, **options):
        schedule = sync_daily_schedule()
        self.stdout.write(
            f"{schedule.name}: cron '{schedule.cron}' (UTC), next run {schedule.next_run:%Y-%m-%d %H:%M}"
        )
