"""The daily reconciliation schedule, kept in step with settings idempotently
(the sweeps that keep work going when a worker dies or a deadline passes are
declared on ReconciliationConfig and synced by revassure.schedules).

The daily run is one a day: its day is that of the schedule's occurrence, and
the run is claimed by it (ReconciliationRun.scheduled_for). The schedule's
task may be lost with a machine; the minute's sweep (reconciliation/recovery.py)
starts the day's run once it is a grace past the occurrence and none has been
requested, and a late task finds the day taken.
"""

from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.utils import timezone
from django_q.models import Schedule

from reconciliation.models import ReconciliationRun

NAME = "daily-reconcile"
FUNC = "reconciliation.tasks.scheduled_reconcile"
# The scheduler passes the occurrence it fires for under this name.
INTENDED = "intended_date"


def parse_daily_at(value: str) -> tuple[int, int]:
    """'HH:MM' (UTC) -> (hour, minute); ValueError when it is not a time of day."""
    hour_text, sep, minute_text = value.partition(":")
    if not sep or not hour_text.isdigit() or not minute_text.isdigit() or len(minute_text) != 2:
        raise ValueError(f"expected HH:MM, got {value!r}")
    hour, minute = int(hour_text), int(minute_text)
    if not (0 <= hour < 24 and 0 <= minute < 60):
        raise ValueError(f"expected HH:MM, got {value!r}")
    return hour, minute


def next_occurrence(hour: int, minute: int, now: datetime) -> datetime:
    candidate = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return candidate if candidate > now else candidate + timedelta(days=1)


def last_occurrence(now: datetime) -> datetime:
    """The daily run's latest occurrence at or before `now` (UTC)."""
    hour, minute = parse_daily_at(settings.RECONCILE_DAILY_AT)
    now = now.astimezone(UTC)
    candidate = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return candidate if candidate <= now else candidate - timedelta(days=1)


def day_of(now: datetime, intended: str | None = None) -> date:
    """The day a scheduled task runs for: its occurrence (the scheduler's
    `intended` time; a task arriving a few seconds early by this machine's
    clock keeps it), or the latest one when the task is older than that (a
    scheduler that was down fires once, late: it stands for the latest day)."""
    latest = last_occurrence(now)
    if intended:
        latest = max(latest, datetime.fromisoformat(intended))
    return latest.astimezone(UTC).date()


def sync_daily_schedule() -> Schedule:
    """Create or update the one named schedule (never a duplicate)."""
    hour, minute = parse_daily_at(settings.RECONCILE_DAILY_AT)
    cron = f"{minute} {hour} * * *"
    schedule, created = Schedule.objects.get_or_create(
        name=NAME,
        defaults={
            "func": FUNC,
            "schedule_type": Schedule.CRON,
            "cron": cron,
            "repeats": -1,
            "next_run": next_occurrence(hour, minute, timezone.now()),
            "intended_date_kwarg": INTENDED,
        },
    )
    if not created and (
        schedule.cron != cron or schedule.func != FUNC or schedule.intended_date_kwarg != INTENDED
    ):
        schedule.func, schedule.cron, schedule.schedule_type = FUNC, cron, Schedule.CRON
        schedule.intended_date_kwarg = INTENDED
        schedule.next_run = next_occurrence(hour, minute, timezone.now())
        schedule.save(update_fields=["func", "cron", "schedule_type", "intended_date_kwarg", "next_run"])
    return schedule


def missed_day(now: datetime, grace: float) -> date | None:
    """The day whose daily run should have been requested by now and was not:
    its occurrence is more than `grace` seconds ago, the schedule fired at least
    once (a new installation has missed nothing), and no run claims the day.
    None otherwise."""
    fired = Schedule.objects.filter(name=NAME, task__isnull=False).exists()
    occurrence = last_occurrence(now)
    if not fired or now < occurrence + timedelta(seconds=grace):
        return None
    day = occurrence.date()
    return None if ReconciliationRun.objects.filter(scheduled_for=day).exists() else day
