"""Start-up checks of reconciliation's own settings (the rest are in revassure/checks.py)."""

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, register

from reconciliation.schedule import parse_daily_at


@register()
def daily_schedule(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    try:
        parse_daily_at(settings.RECONCILE_DAILY_AT)
    except ValueError as exc:
        return [Error(f"RECONCILE_DAILY_AT is not a UTC time of day: {exc}", id="revassure.E001")]
    return []


@register()
def break_settings(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    """The breaks' thresholds (reconciliation/break_age.py) make sense together."""
    errors: list[CheckMessage] = []
    buckets = settings.BREAK_AGE_BUCKETS
    if not buckets or buckets[0] < 0 or buckets != sorted(set(buckets)):
        errors.append(
            Error(
                f"BREAK_AGE_BUCKETS must be increasing whole days, e.g. 1,7,30 (got {buckets})",
                id="revassure.E020",
            )
        )
    if not 0 < settings.BREAK_SEVERITY_MEDIUM_POINTS <= settings.BREAK_SEVERITY_HIGH_POINTS:
        errors.append(
            Error(
                "BREAK_SEVERITY_MEDIUM_POINTS must be positive and at most BREAK_SEVERITY_HIGH_POINTS",
                id="revassure.E021",
            )
        )
    if settings.BREAK_SEVERITY_ESCALATE_DAYS < 0 or settings.BREAK_CAUSE_MAX_ENTRIES < 0:
        errors.append(
            Error(
                "BREAK_SEVERITY_ESCALATE_DAYS and BREAK_CAUSE_MAX_ENTRIES cannot be negative",
                id="revassure.E022",
            )
        )
    if settings.BREAK_CAUSE_CONCURRENCY < 1:
        errors.append(Error("BREAK_CAUSE_CONCURRENCY must be at least 1", id="revassure.E023"))
    return errors


@register()
def read_time_settings(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    """A run's expected length (reconciliation/instant.py) divides by this rate."""
    if not settings.RECONCILE_EXPECTED_RATE > 0:
        return [
            Error(
                "RECONCILE_EXPECTED_RATE must be a positive number of wallets per second", id="revassure.E024"
            )
        ]
    return []
