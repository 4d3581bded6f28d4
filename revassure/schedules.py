"""The tasks each app runs every few minutes (its sweeps and evaluations):
declared by each app, synced after every migrate, as the role grants are.

Each app's AppConfig names them (`schedules = {name: (task, minutes)}`); after
every `migrate` (and every flush of a test database), `sync` makes one
django-q2 schedule of each name run its task that often, for ever: created when
missing, put right when changed. A schedule no app declares is left alone (the
daily reconciliation's own, reconciliation/schedule.py, is kept in step there).
"""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig, apps
from django.db import DEFAULT_DB_ALIAS
from django_q.models import Schedule


def declared() -> dict[str, tuple[str, int]]:
    """Every app's schedules: name -> (task, every how many minutes)."""
    found: dict[str, tuple[str, int]] = {}
    for config in apps.get_app_configs():
        for name, (func, minutes) in getattr(config, "schedules", {}).items():
            if name in found:
                raise ValueError(f"{config.label} declares the schedule {name!r} another app declares")
            found[name] = (func, minutes)
    return found


def sync(using: str = DEFAULT_DB_ALIAS) -> list[Schedule]:
    """Create or update the schedule of each declared name; the schedules."""
    return [
        Schedule.objects.using(using).update_or_create(
            name=name,
            defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": minutes, "repeats": -1},
        )[0]
        for name, (func, minutes) in declared().items()
    ]


def after_migrate(sender: AppConfig, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """post_migrate is sent once per app with models, in INSTALLED_APPS order:
    the schedules are synced once, after the last (when every table exists)."""
    with_models = [config for config in apps.get_app_configs() if config.models_module is not None]
    if with_models and sender is with_models[-1]:
        sync(using=using)
