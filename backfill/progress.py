"""A migration's progress as people watch it: how far (of how many, when the
total is known), how fast over running time only (a pause, or a failure until
resumed, does not drag the rate down), and how long is left."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from backfill.models import DataMigration, MigrationStatus

FINISHED = (MigrationStatus.COMPLETED, MigrationStatus.FAILED, MigrationStatus.CANCELLED)
LIVE = (MigrationStatus.PENDING, MigrationStatus.RUNNING)


@dataclass(frozen=True)
class Progress:
    done: int
    expected: int | None  # None: not known (a command's file)
    running_seconds: float | None  # None: not started
    rate: float | None  # items per running second
    seconds_left: float | None  # only while running, with a known total and a rate

    @property
    def percent(self) -> int | None:
        if not self.expected:
            return None
        return min(100, int(100 * self.done / self.expected))


def expected_of(migration: DataMigration) -> int | None:
    """The number of items the migration will handle, when known: counted at
    upload, or when a stored replay starts."""
    expected = migration.parameters.get("expected")
    return expected if isinstance(expected, int) and expected >= 0 else None


def running_seconds(migration: DataMigration, now: datetime | None = None) -> float | None:
    """Seconds spent running since it started, pauses left out."""
    if migration.started_at is None:
        return None
    now = now or timezone.now()
    if migration.status == MigrationStatus.PAUSED and migration.paused_at:
        end = migration.paused_at
    elif migration.status in FINISHED:
        end = migration.paused_at or migration.finished_at or migration.heartbeat_at or now
    else:
        end = now
    return max(0.0, (end - migration.started_at).total_seconds() - migration.paused_seconds)


def of(migration: DataMigration, now: datetime | None = None) -> Progress:
    done = migration.processed
    expected = expected_of(migration)
    if expected is None and migration.status == MigrationStatus.COMPLETED:
        expected = done  # a command's file: counted by running it
    running = running_seconds(migration, now)
    rate = done / running if running and done else None
    left = None
    if migration.status == MigrationStatus.RUNNING and expected is not None and rate:
        left = max(0, expected - done) / rate
    return Progress(done, expected, running, rate, left)


def duration(seconds: float) -> str:
    """ "42 s", "3 min 5 s", "1 h 5 min": rounded for a person, not a log."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds and minutes < 10 else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"
