"""Start-up checks of reconciliation's own settings (the rest are in revassure/checks.py)."""

from django.conf import settings
from django.core.checks import Error, register

from reconciliation.schedule import parse_daily_at


@register()
def daily_schedule(app_configs, **kwargs):
    try:
        parse_daily_at(settings.RECONCILE_DAILY_AT)
    except ValueError as exc:
        return [Error(f"RECONCILE_DAILY_AT is not a UTC time of day: {exc}", id="revassure.E001")]
    return []
