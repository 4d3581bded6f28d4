"""The periodic tasks each app declares exist after migrate, and are put right."""

import pytest
from django.apps import apps
from django_q.models import Schedule

from revassure import schedules

EVERY_APP = {
    "sweep-data-migrations": ("backfill.tasks.sweep_migrations", 1),
    "sweep-webhook-deliveries": ("backfill.tasks.sweep_webhooks", 1),
    "sweep-settlement-runs": ("settlement.tasks.sweep", 1),
    "sweep-snapshots": ("snapshots.tasks.sweep", 1),
    "evaluate-alerts": ("observability.tasks.evaluate_alerts", 1),
    "sweep-notifications": ("observability.tasks.sweep_notifications", 1),
    "sweep-balance-requests": ("reconciliation.tasks.sweep_requests", 10),
    "sweep-reconciliation-runs": ("reconciliation.tasks.sweep_runs", 1),
    "sweep-written-wallets": ("reconciliation.tasks.sweep_written_wallets", 1),
}


@pytest.mark.django_db
def test_every_schedule_an_app_declares_exists_after_migrate_and_runs_for_ever():
    assert schedules.declared() == EVERY_APP
    for name, (func, minutes) in EVERY_APP.items():
        schedule = Schedule.objects.get(name=name)
        assert (schedule.func, schedule.schedule_type, schedule.minutes, schedule.repeats) == (
            func,
            Schedule.MINUTES,
            minutes,
            -1,
        ), name
        # Each task the schedule names exists.
        module, _, function = func.rpartition(".")
        assert callable(getattr(__import__(module, fromlist=[function]), function)), func


@pytest.mark.django_db
def test_a_schedule_changed_by_hand_is_put_right_and_none_is_doubled():
    Schedule.objects.filter(name="sweep-snapshots").update(minutes=60, func="snapshots.tasks.nothing")
    Schedule.objects.filter(name="evaluate-alerts").delete()

    schedules.sync()
    schedules.sync()

    assert (
        Schedule.objects.get(name="sweep-snapshots").minutes,
        Schedule.objects.get(name="sweep-snapshots").func,
    ) == (
        1,
        "snapshots.tasks.sweep",
    )
    assert Schedule.objects.filter(name__in=EVERY_APP).count() == len(EVERY_APP)


def test_two_apps_declaring_one_name_is_refused(monkeypatch):
    settlement = apps.get_app_config("settlement")
    monkeypatch.setattr(
        settlement, "schedules", {"sweep-snapshots": ("settlement.tasks.sweep", 1)}, raising=False
    )
    with pytest.raises(ValueError, match="sweep-snapshots"):
        schedules.declared()
